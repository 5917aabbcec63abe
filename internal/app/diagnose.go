package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/sas"
)

const diagnoseUsage = `roost diagnose --device-connection-string "HostName=...;DeviceId=...;SharedAccessKey=..." [--server HOST] [--ca-file PEM] [--timeout 5s]`

// check is one step of roost diagnose.
type check struct {
	name   string
	ok     bool
	skip   bool
	detail string
	fix    string
}

// runDiagnose checks, from a device's point of view, what it needs to reach the hub: DNS, TCP
// on each port, TLS and the server's certificate chain, the SAS key and the clock, and a real
// MQTT CONNECT, printing what failed and the troubleshooting guide's fix (like iothub-diagnostics).
func runDiagnose(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("diagnose", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintf(stderr, "Usage: %s\n\nFlags:\n", diagnoseUsage); fs.PrintDefaults() }
	connStr := fs.String("device-connection-string", envOr("DEVICE_CONNECTION_STRING", ""), "the device's connection string (default: $DEVICE_CONNECTION_STRING)")
	server := fs.String("server", "", "host to connect to instead of the connection string's HostName (TLS still checks HostName)")
	caFile := fs.String("ca-file", envOr("ROOST_CA_FILE", ""), "extra CA certificate (PEM) to trust, as the device's SDK would (default: the local hub's CA)")
	dataDir := fs.String("data-dir", envOr("ROOST_DATA_DIR", "./roost-data"), "data dir of a local hub, for its CA")
	timeout := fs.Duration("timeout", 5*time.Second, "timeout of each network step")
	mqttPort := fs.Int("mqtt-port", 8883, "MQTT over TLS port")
	httpsPort := fs.Int("https-port", 443, "HTTPS and WebSockets port")
	if _, err := parseArgs(fs, args); err != nil {
		return 2
	}
	if *connStr == "" {
		fmt.Fprintf(stderr, "Usage: %s\n", diagnoseUsage)
		return 2
	}
	var checks []check
	report := func(c check) {
		checks = append(checks, c)
		mark := "ok  "
		switch {
		case c.skip:
			mark = "skip"
		case !c.ok:
			mark = "FAIL"
		}
		fmt.Fprintf(stdout, "[%s] %-22s %s\n", mark, c.name, c.detail)
		if !c.ok && !c.skip && c.fix != "" {
			fmt.Fprintf(stdout, "       fix: %s\n", c.fix)
		}
	}

	cs, err := sas.ParseConnectionString(*connStr)
	if err != nil || cs.DeviceID == "" {
		if err == nil {
			err = errors.New("it has no DeviceId: this is a service connection string")
		}
		report(check{name: "connection string", detail: err.Error(),
			fix: "use the device's connection string: HostName=<hub>;DeviceId=<id>;SharedAccessKey=<key> (roost connection-string --device <id>)"})
		return 1
	}
	report(check{name: "connection string", ok: true, detail: fmt.Sprintf("hub %s, device %s%s", cs.HostName, cs.DeviceID, moduleSuffix(cs.ModuleID))})
	keyOK := true
	if cs.SharedAccessKey != "" {
		if k, err := base64.StdEncoding.DecodeString(cs.SharedAccessKey); err != nil || len(k) == 0 {
			keyOK = false
			report(check{name: "SAS key", detail: "the SharedAccessKey is not base64",
				fix: "copy the device's primary or secondary key again (roost device keys <id>); a wrong key gives 401003 IoTHubUnauthorized"})
		} else {
			report(check{name: "SAS key", ok: true, detail: fmt.Sprintf("%d-byte key", len(k))})
		}
	} else if cs.SharedAccessSignature != "" {
		tok, err := sas.ParseToken(cs.SharedAccessSignature)
		switch {
		case err != nil:
			keyOK = false
			report(check{name: "SAS token", detail: err.Error(), fix: "make a new token: roost sas-token --device " + cs.DeviceID})
		case time.Until(tok.Expiry) <= 0:
			keyOK = false
			report(check{name: "SAS token", detail: "expired at " + tok.Expiry.UTC().Format(time.RFC3339),
				fix: "an expired token gives 401002 (or 401003 mid-connection): make a new one, roost sas-token --device " + cs.DeviceID})
		default:
			report(check{name: "SAS token", ok: true, detail: "valid until " + tok.Expiry.UTC().Format(time.RFC3339)})
		}
	} else {
		report(check{name: "credentials", skip: true, ok: true, detail: "no key or token: an X.509 device; the MQTT check is skipped"})
		keyOK = false
	}

	host := cs.HostName
	if *server != "" {
		host = *server
	}
	// DNS.
	dctx, cancel := context.WithTimeout(ctx, *timeout)
	addrs, err := net.DefaultResolver.LookupHost(dctx, host)
	cancel()
	if err != nil {
		report(check{name: "DNS", detail: fmt.Sprintf("%s does not resolve: %v", host, err),
			fix: "check the HostName, the device's DNS server, or pass --server with the hub's address"})
		return summarize(stdout, checks)
	}
	report(check{name: "DNS", ok: true, detail: host + " is " + strings.Join(addrs, ", ")})

	// TCP on each port.
	reachable := map[int]bool{}
	for _, p := range []struct {
		port int
		what string
	}{{*mqttPort, "MQTT"}, {*httpsPort, "HTTPS, WebSockets"}, {5671, "AMQP"}} {
		addr := net.JoinHostPort(host, strconv.Itoa(p.port))
		c, err := (&net.Dialer{Timeout: *timeout}).DialContext(ctx, "tcp", addr)
		if err != nil {
			fix := "open outbound TCP " + strconv.Itoa(p.port) + " on the device's network (firewalls often block 8883; MQTT over WebSockets uses 443)"
			if p.port == 5671 {
				report(check{name: "TCP " + strconv.Itoa(p.port) + " (" + p.what + ")", ok: true, skip: true, detail: "not reachable (Roost does not serve AMQP yet)"})
				continue
			}
			report(check{name: "TCP " + strconv.Itoa(p.port) + " (" + p.what + ")", detail: err.Error(), fix: fix})
			continue
		}
		_ = c.Close()
		reachable[p.port] = true
		report(check{name: "TCP " + strconv.Itoa(p.port) + " (" + p.what + ")", ok: true, detail: addr + " accepts connections"})
	}

	// TLS and the certificate chain, as the device's SDK sees it.
	pool, _ := x509.SystemCertPool()
	if pool == nil {
		pool = x509.NewCertPool()
	}
	ca := *caFile
	if ca == "" {
		if lf, err := readLocal(*dataDir); err == nil && lf.HostName == cs.HostName {
			ca = lf.CAFile
		}
	}
	if ca != "" {
		if pem, err := os.ReadFile(ca); err == nil {
			pool.AppendCertsFromPEM(pem)
		}
	}
	tlsCfg := &tls.Config{ServerName: cs.HostName, RootCAs: pool, MinVersion: tls.VersionTLS12}
	tlsPort := *mqttPort
	if !reachable[tlsPort] {
		tlsPort = *httpsPort
	}
	var serverTime time.Time
	if reachable[tlsPort] {
		addr := net.JoinHostPort(host, strconv.Itoa(tlsPort))
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: *timeout}, "tcp", addr, tlsCfg)
		if err != nil {
			fix := "the device must trust the hub's CA: for Node set NODE_EXTRA_CA_CERTS to it, or pass the SDK's ca option (roost ca-cert prints it)"
			var hErr x509.HostnameError
			if errors.As(err, &hErr) {
				fix = "the certificate does not name " + cs.HostName + ": use the hub's --hostname in the connection string, or add it with roost serve --tls-san"
			}
			report(check{name: "TLS", detail: err.Error(), fix: fix})
		} else {
			st := conn.ConnectionState()
			leaf := st.PeerCertificates[0]
			detail := fmt.Sprintf("%s, certificate for %s expires %s", tls.VersionName(st.Version), strings.Join(leaf.DNSNames, ","), leaf.NotAfter.UTC().Format("2006-01-02"))
			ok := time.Until(leaf.NotAfter) > 0
			report(check{name: "TLS", ok: ok, detail: detail, fix: "renew the hub's certificate"})
			for i, c := range st.PeerCertificates {
				fmt.Fprintf(stdout, "       chain %d: %s (issuer %s)\n", i, c.Subject.CommonName, c.Issuer.CommonName)
			}
			_ = conn.Close()
		}
		// The hub's clock, from an HTTPS Date header.
		if reachable[*httpsPort] {
			hc := &http.Client{Timeout: *timeout, Transport: &http.Transport{TLSClientConfig: tlsCfg,
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					return (&net.Dialer{Timeout: *timeout}).DialContext(ctx, network, net.JoinHostPort(host, strconv.Itoa(*httpsPort)))
				}}}
			if resp, err := hc.Get("https://" + cs.HostName + "/devices/" + cs.DeviceID + "?api-version=2021-04-12"); err == nil {
				serverTime, _ = http.ParseTime(resp.Header.Get("Date"))
				_ = resp.Body.Close()
			}
		}
	}
	if !serverTime.IsZero() {
		skew := time.Since(serverTime).Round(time.Second)
		if skew < 0 {
			skew = -skew
		}
		report(check{name: "clock", ok: skew < 5*time.Minute, detail: fmt.Sprintf("the device's clock is %s off the hub's", skew),
			fix: "tokens are signed with the device's time: sync its clock with NTP (over 5 minutes off gives 401003 IoTHubUnauthorized)"})
	} else {
		report(check{name: "clock", ok: true, skip: true, detail: "the hub's time could not be read over HTTPS"})
	}

	// A real MQTT CONNECT, as the SDKs send it.
	if keyOK && reachable[*mqttPort] {
		pass := cs.SharedAccessSignature
		if pass == "" {
			pass, err = sas.Sign(sas.DeviceResource(cs.HostName, cs.DeviceID, cs.ModuleID), cs.SharedAccessKey, "", time.Now().Add(time.Hour))
			if err != nil {
				report(check{name: "MQTT connect", detail: err.Error()})
				return summarize(stdout, checks)
			}
		}
		code, err := mqttProbe(ctx, net.JoinHostPort(host, strconv.Itoa(*mqttPort)), tlsCfg, cs, pass, *timeout)
		switch {
		case err != nil:
			report(check{name: "MQTT connect", detail: err.Error(), fix: "see the TLS and TCP checks above"})
		case code == 0:
			report(check{name: "MQTT connect", ok: true, detail: "CONNACK 0: the hub accepted the device"})
		default:
			detail, fix := connackAdvice(code)
			report(check{name: "MQTT connect", detail: detail, fix: fix})
		}
	} else {
		report(check{name: "MQTT connect", ok: true, skip: true, detail: "skipped (no usable key or port 8883 unreachable)"})
	}
	return summarize(stdout, checks)
}

func moduleSuffix(m string) string {
	if m == "" {
		return ""
	}
	return ", module " + m
}

func summarize(w io.Writer, checks []check) int {
	failed := 0
	for _, c := range checks {
		if !c.ok && !c.skip {
			failed++
		}
	}
	if failed == 0 {
		fmt.Fprintln(w, "\nEverything a device needs works. If it still fails, find its errors with roost logs explain.")
		return 0
	}
	fmt.Fprintf(w, "\n%d check(s) failed. The hub's side of the story: roost logs query 'AzureDiagnostics | where Level == \"Error\"' --explain\n", failed)
	return 1
}

// connackAdvice explains a refused CONNECT as the troubleshooting guide does.
func connackAdvice(code byte) (string, string) {
	switch code {
	case 1:
		return "CONNACK 1: protocol version refused", "use MQTT 3.1.1 (protocol level 4), as the Azure SDKs do"
	case 2:
		return "CONNACK 2: client id refused", "the MQTT client id must be the device id (or deviceId/moduleId)"
	case 3:
		return "CONNACK 3: server unavailable (500xxx, 503 or 429001 on the hub)",
			"transient: retry with back-off; check the hub's health (/healthz) and roost logs explain for 500001, 500008 or 429001"
	case 4, 5:
		return fmt.Sprintf("CONNACK %d: not authorized (401002 AuthenticationFailed or 401003 IoTHubUnauthorized)", code),
			"check that the device is registered and enabled (roost device show <id>) and that the key matches; roost logs query '" +
				`AzureDiagnostics | where Category == "Connections" and Level == "Error"' shows which code the hub logged`
	}
	return fmt.Sprintf("CONNACK %d", code), ""
}

// mqttProbe sends one MQTT 3.1.1 CONNECT over TLS and returns the CONNACK's return code.
func mqttProbe(ctx context.Context, addr string, tlsCfg *tls.Config, cs sas.ConnectionString, password string, timeout time.Duration) (byte, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: tlsCfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	clientID := cs.DeviceID
	if cs.ModuleID != "" {
		clientID += "/" + cs.ModuleID
	}
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	var vh []byte
	vh = append(vh, str("MQTT")...)
	vh = append(vh, 4, 0xC2, 0, 60)
	vh = append(vh, str(clientID)...)
	vh = append(vh, str(cs.HostName+"/"+clientID+"/?api-version=2021-04-12&DeviceClientType=roost-diagnose")...)
	vh = append(vh, str(password)...)
	pkt := []byte{0x10}
	for n := len(vh); ; {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		pkt = append(pkt, b)
		if n == 0 {
			break
		}
	}
	pkt = append(pkt, vh...)
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(pkt); err != nil {
		return 0, err
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil {
		return 0, fmt.Errorf("no CONNACK: %v", err)
	}
	if ack[0] != 0x20 {
		return 0, fmt.Errorf("unexpected answer %x", ack)
	}
	// Disconnect cleanly so the hub logs an ordinary disconnect, not an error.
	_, _ = c.Write([]byte{0xE0, 0})
	return ack[3], nil
}
