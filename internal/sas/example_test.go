package sas_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/roost-iot/roost/internal/sas"
)

func Example() {
	const key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	expiry := time.Unix(1700000000, 0)

	// What the Node device SDK sends as its MQTT password.
	password, err := sas.Sign("myhub.azure-devices.net/devices/device1", key, "", expiry)
	if err != nil {
		panic(err)
	}
	fmt.Println(password)

	// What the hub does with it.
	tok, err := sas.ParseToken(password)
	if err != nil {
		panic(err)
	}
	fmt.Println(tok.CheckResource(sas.DeviceResource("myhub.azure-devices.net", "device1", "")))
	fmt.Println(tok.Verify(key, expiry.Add(-time.Minute)))
	fmt.Println(errors.Is(tok.Verify(key, expiry), sas.ErrExpired))
	// Output:
	// SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice1&sig=gFSfLGMXDOvf906%2FiaX3KwzLLNFHgaFZyCbsGjxtd1Y%3D&se=1700000000
	// <nil>
	// <nil>
	// true
}

func ExampleParseConnectionString() {
	cs, err := sas.ParseConnectionString("SharedAccessKey=c2VjcmV0c2VjcmV0c2VjcmV0;DeviceId=dev1;HostName=myhub.azure-devices.net")
	if err != nil {
		panic(err)
	}
	fmt.Println(cs.DeviceID)
	fmt.Println(cs.String())
	fmt.Println(cs.Redacted())
	// Output:
	// dev1
	// HostName=myhub.azure-devices.net;DeviceId=dev1;SharedAccessKey=c2VjcmV0c2VjcmV0c2VjcmV0
	// HostName=myhub.azure-devices.net;DeviceId=dev1;SharedAccessKey=REDACTED
}
