// Package sas parses, signs and verifies IoT Hub shared access signature (SAS) tokens and
// parses and prints IoT Hub connection strings.
//
// Everything here reads untrusted input (MQTT passwords, HTTP Authorization headers, AMQP
// put-token bodies, connection strings typed by users) and never panics on it: parsing,
// signing and verification failures are errors that wrap one of the sentinels [ErrMalformed],
// [ErrExpired], [ErrBadSignature] or [ErrWrongResource], so an edge can map them to IoT Hub's
// codes with [errors.Is] (spec/decisions.md: expired → 401002; bad signature or wrong
// resource → 401003).
//
// A token has the form
//
//	SharedAccessSignature sr=<resource>&sig=<signature>&se=<expiry>[&skn=<policy>]
//
// with the fields in any order. The signature is base64(HMAC-SHA256(base64decode(key),
// <sr exactly as sent> + "\n" + <se exactly as sent>)); see
// https://learn.microsoft.com/azure/iot-hub/authenticate-authorize-sas.
//
// Verifying a device's CONNECT:
//
//	tok, err := sas.ParseToken(password)
//	if err != nil {
//		return err // wraps sas.ErrMalformed
//	}
//	target := sas.DeviceResource(hubHost, deviceID, "")
//	if err := tok.CheckResource(target); err != nil {
//		return err // wraps sas.ErrWrongResource
//	}
//	err = tok.Verify(dev.PrimaryKey, now)
//	if errors.Is(err, sas.ErrBadSignature) {
//		err = tok.Verify(dev.SecondaryKey, now)
//	}
//	return err // nil, or wraps sas.ErrExpired or sas.ErrBadSignature
//
// Making a token the way the Node device SDK does:
//
//	tok, err := sas.Sign("myhub.example.com/devices/dev1", key, "", time.Now().Add(time.Hour))
//
// and the way the Node service SDK does (the resource is the bare host name):
//
//	tok, err := sas.Sign("myhub.example.com", policyKey, "iothubowner", time.Now().Add(time.Hour))
//
// Connection strings are split on ';' and each part at its first '=' (base64 keys end in '='):
//
//	cs, err := sas.ParseConnectionString("HostName=h;DeviceId=d;SharedAccessKey=" + key)
//	fmt.Println(cs.DeviceID, cs.String())
package sas
