package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/roost-iot/roost/internal/config"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/sas"
)

// The troubleshooting guide's query, verbatim.
const guideQuery = `search *
| where ( Type == "AzureDiagnostics" and ResourceType == "IOTHUBS")
| where ( Category == "Connections" and Level == "Error")`

// mqttConnect connects a device with paho as the Azure SDKs do (MQTT 3.1.1 over TLS, IoT Hub's
// user name and a SAS token as password) and returns the client or the refusal.
func mqttConnect(t *testing.T, h *Hub, deviceID, password string, onLost func(error)) (paho.Client, error) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(h.TLS.CAPEM)
	opts := paho.NewClientOptions().
		AddBroker("ssl://" + h.MQTTAddr).
		SetClientID(deviceID).
		SetUsername(h.Config.HostName + "/" + deviceID + "/?api-version=2021-04-12&DeviceClientType=azure-iot-device%2F1.18.2").
		SetPassword(password).
		SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: h.Config.HostName, MinVersion: tls.VersionTLS12}).
		SetProtocolVersion(4).SetCleanSession(false).SetAutoReconnect(false).SetConnectRetry(false).
		SetKeepAlive(30 * time.Second).SetConnectTimeout(5 * time.Second)
	if onLost != nil {
		opts.SetConnectionLostHandler(func(_ paho.Client, err error) { onLost(err) })
	}
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

func deviceSAS(t *testing.T, h *Hub, id, key string) string {
	t.Helper()
	tok, err := sas.Sign(sas.DeviceResource(h.Config.HostName, id, ""), key, "", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// queryRows runs a query through the CLI (roost logs query --output json) until it returns
// at least want rows (records are written in the background) and returns them.
func queryRows(t *testing.T, dd string, want int, args ...string) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, errs, code := run(t, append([]string{"logs", "query", dd, "--output", "json"}, args...)...)
		if code != 0 {
			t.Fatalf("logs query: %d %s %s", code, out, errs)
		}
		var rows []map[string]any
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("logs query output: %v\n%s", err, out)
		}
		if len(rows) >= want || time.Now().After(deadline) {
			return rows
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func props(t *testing.T, row map[string]any) map[string]any {
	t.Helper()
	var p map[string]any
	if err := json.Unmarshal([]byte(row["properties_s"].(string)), &p); err != nil {
		t.Fatalf("properties_s: %v", err)
	}
	return p
}

// TestGuideQueryFindsConnectionErrors causes the troubleshooting guide's connection errors with
// a real MQTT client and finds each with the guide's query, as a user would: OperationName,
// ResultType, ResultDescription, and the explanation.
func TestGuideQueryFindsConnectionErrors(t *testing.T) {
	t.Parallel()
	h, dd := startCLIHub(t)
	ctx := context.Background()
	dev := createDevice(t, h, "press-07")
	key := dev.Authentication.SymmetricKey.PrimaryKey

	// 1. A wrong key: 401003 IoTHubUnauthorized on deviceConnect (CONNACK 5).
	other, _ := h.Registry.CreateDevice(ctx, registry.Device{DeviceID: "other"})
	if _, err := mqttConnect(t, h, "press-07", deviceSAS(t, h, "press-07", other.Authentication.SymmetricKey.PrimaryKey), nil); err == nil {
		t.Fatal("a wrong key must be refused")
	}
	rows := queryRows(t, dd, 1, guideQuery)
	if len(rows) != 1 {
		t.Fatalf("guide query: %d rows, want 1: %v", len(rows), rows)
	}
	r := rows[0]
	if r["OperationName"] != "deviceConnect" || r["ResultType"] != "401003" || r["ResultDescription"] != "IoTHubUnauthorized" ||
		r["Category"] != "Connections" || r["Level"] != "Error" || r["Type"] != "AzureDiagnostics" || r["ResourceType"] != "IOTHUBS" ||
		r["$table"] != "AzureDiagnostics" {
		t.Fatalf("wrong-key record: %v", r)
	}
	if p := props(t, r); p["deviceId"] != "press-07" || p["protocol"] != "Mqtt" || p["statusCode"] != "401" ||
		!strings.HasPrefix(p["sdkVersion"].(string), "azure-iot-device/") || !strings.HasSuffix(p["maskedIpAddress"].(string), ".XXX") {
		t.Fatalf("wrong-key properties: %v", p)
	}

	// 2. An unknown device: 401002, which the guide calls AuthenticationFailed.
	if _, err := mqttConnect(t, h, "ghost", deviceSAS(t, h, "ghost", key), nil); err == nil {
		t.Fatal("an unknown device must be refused")
	}
	// 3. A connection that ends without DISCONNECT: 404104 on deviceDisconnect.
	raw, err := tls.Dial("tcp", h.MQTTAddr, &tls.Config{RootCAs: certPool(h), ServerName: h.Config.HostName})
	if err != nil {
		t.Fatal(err)
	}
	if err := rawConnect(raw, h.Config.HostName, "press-07", deviceSAS(t, h, "press-07", key)); err != nil {
		t.Fatal(err)
	}
	_ = raw.Close()
	// 4. Two connections of one device: the first is closed with 409002 LinkCreationConflict.
	lost := make(chan error, 1)
	if _, err := mqttConnect(t, h, "press-07", deviceSAS(t, h, "press-07", key), func(err error) { lost <- err }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if _, err := mqttConnect(t, h, "press-07", deviceSAS(t, h, "press-07", key), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the first connection was not closed")
	}
	rows = queryRows(t, dd, 4, guideQuery+"\n| order by TimeGenerated asc")
	var got []string
	for _, r := range rows {
		got = append(got, fmt.Sprintf("%s %s %s %s", r["OperationName"], r["ResultType"], r["ResultDescription"], props(t, r)["deviceId"]))
	}
	want := []string{
		"deviceConnect 401003 IoTHubUnauthorized press-07",
		"deviceConnect 401002 AuthenticationFailed ghost",
		"deviceDisconnect 404104 DeviceConnectionClosedRemotely press-07",
		"deviceDisconnect 409002 LinkCreationConflict press-07",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("guide query rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The explanation of every code the query returned: --explain, explain() and logs explain.
	rows = queryRows(t, dd, 4, "--explain", guideQuery)
	for _, r := range rows {
		if r["Cause"] == "" || r["Resolution"] == "" {
			t.Errorf("%s has no explanation: %v", r["ResultType"], r)
		}
	}
	rows = queryRows(t, dd, 1, `AzureDiagnostics | where ResultType == "404104" | project e = explain(ResultType)`)
	if e, ok := rows[0]["e"].(map[string]any); !ok || e["name"] != "DeviceConnectionClosedRemotely" || e["resolution"] == "" {
		t.Fatalf("explain(): %v", rows[0])
	}
	out, errs, code := run(t, "logs", "explain", dd)
	for _, want := range []string{"401003 IoTHubUnauthorized: 1 time", "401002 AuthenticationFailed: 1 time, 1 device(s): ghost",
		"404104 DeviceConnectionClosedRemotely", "409002 LinkCreationConflict", "cause:", "fix:"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("logs explain lacks %q: %d\n%s%s", want, code, out, errs)
		}
	}

	// The same query over HTTP in the Log Analytics API's shape, signed with the service policy.
	cs, err := h.ConnectionString(ctx, "service")
	if err != nil {
		t.Fatal(err)
	}
	parsed, _ := sas.ParseConnectionString(cs)
	tok, _ := sas.Sign(parsed.HostName, parsed.SharedAccessKey, parsed.SharedAccessKeyName, time.Now().Add(time.Hour))
	body, _ := json.Marshal(map[string]any{"query": guideQuery, "timespan": "PT1H"})
	req, _ := http.NewRequest(http.MethodPost, "http://"+h.AdminAddr+"/diagnostics/query", bytes.NewReader(body))
	req.Header.Set("Authorization", tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var la struct {
		Tables []struct {
			Name    string                        `json:"name"`
			Columns []struct{ Name, Type string } `json:"columns"`
			Rows    [][]any                       `json:"rows"`
		} `json:"tables"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&la)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(la.Tables) != 1 || la.Tables[0].Name != "PrimaryResult" || len(la.Tables[0].Rows) != 4 ||
		la.Tables[0].Columns[1].Name != "TimeGenerated" || la.Tables[0].Columns[1].Type != "datetime" {
		t.Fatalf("POST /diagnostics/query: %d %+v", resp.StatusCode, la)
	}
	// A device policy may not read the logs; a bad query names its line and column.
	dtok, _ := sas.Sign(parsed.HostName, mustPolicyKey(t, h, "device"), "device", time.Now().Add(time.Hour))
	for _, c := range []struct {
		auth, query string
		status      int
		contains    string
	}{
		{dtok, guideQuery, 401, "does not allow access"},
		{tok, "AzureDiagnostics\n| where Level === 1", 400, `"line":2`},
		{tok, "AzureDiagnostics | where Nope == 1", 400, "unknown column"},
	} {
		body, _ := json.Marshal(map[string]any{"query": c.query})
		req, _ := http.NewRequest(http.MethodPost, "http://"+h.AdminAddr+"/diagnostics/query", bytes.NewReader(body))
		req.Header.Set("Authorization", c.auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.Contains(b.String(), c.contains) {
			t.Errorf("%q: %d %s, want %d with %q", c.query, resp.StatusCode, b.String(), c.status, c.contains)
		}
	}
	_, errs, code = run(t, "logs", "query", dd, "AzureDiagnostics\n| where Level === 1")
	if code != 1 || !strings.Contains(errs, "line 2, column") || !strings.Contains(errs, "^") {
		t.Fatalf("CLI query error: %d %s", code, errs)
	}
}

func mustPolicyKey(t *testing.T, h *Hub, name string) string {
	t.Helper()
	p, ok, err := h.Policies.Policy(context.Background(), name)
	if err != nil || !ok {
		t.Fatalf("policy %s: %v", name, err)
	}
	return p.PrimaryKey
}

func certPool(h *Hub) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(h.TLS.CAPEM)
	return pool
}

// rawConnect sends an MQTT 3.1.1 CONNECT and reads the CONNACK, so the test can then drop the
// socket without a DISCONNECT, as a device losing its network does.
func rawConnect(c net.Conn, host, id, password string) error {
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	var vh []byte
	vh = append(vh, str("MQTT")...)
	vh = append(vh, 4, 0xC2, 0, 60) // level 4, user name + password + clean session, keep-alive 60 s
	vh = append(vh, str(id)...)
	vh = append(vh, str(host+"/"+id+"/?api-version=2021-04-12")...)
	vh = append(vh, str(password)...)
	pkt := []byte{0x10}
	n := len(vh)
	for {
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
	if _, err := c.Write(pkt); err != nil {
		return err
	}
	ack := make([]byte, 4)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(ack); err != nil {
		return err
	}
	if ack[0] != 0x20 || ack[3] != 0 {
		return fmt.Errorf("CONNACK %x", ack)
	}
	return nil
}

// TestGuideErrorSummaryFindsServiceErrors causes the guide's service-side errors with the CLI
// (409001 DeviceAlreadyExists, 404001 DeviceNotFound, 404103 DeviceNotOnline) and finds them
// with the fact sheet's error summary query, each explained.
func TestGuideErrorSummaryFindsServiceErrors(t *testing.T) {
	t.Parallel()
	_, dd := startCLIHub(t)
	if _, _, code := run(t, "device", "create", "cam-02", dd); code != 0 {
		t.Fatal("create")
	}
	if _, errs, code := run(t, "device", "create", "cam-02", dd); code != 1 || !strings.Contains(errs, "409001") {
		t.Fatalf("duplicate create: %d %s", code, errs)
	}
	if _, errs, code := run(t, "device", "show", "nobody", dd); code != 1 || !strings.Contains(errs, "404001") {
		t.Fatalf("show: %d %s", code, errs)
	}
	if _, errs, code := run(t, "method", "invoke", "cam-02", "reboot", "--connect-timeout", "0", "--response-timeout", "5", dd); code != 1 || !strings.Contains(errs, "404103") {
		t.Fatalf("method on an offline device: %d %s", code, errs)
	}
	summary := `AzureDiagnostics
| where ResourceProvider == "MICROSOFT.DEVICES" and ResourceType == "IOTHUBS"
| where Level == "Error"
| summarize count() by ResultType, ResultDescription, Category, _ResourceId`
	rows := queryRows(t, dd, 3, "--explain", summary)
	got := map[string]string{}
	for _, r := range rows {
		got[r["ResultType"].(string)] = r["ResultDescription"].(string) + " " + r["Category"].(string)
		if r["Resolution"] == "" {
			t.Errorf("%s has no resolution", r["ResultType"])
		}
	}
	for code, want := range map[string]string{
		"409001": "DeviceAlreadyExists DeviceIdentityOperations",
		"404001": "DeviceNotFound DeviceIdentityOperations",
		"404103": "DeviceNotOnline DirectMethods",
	} {
		if got[code] != want {
			t.Errorf("%s: %q, want %q (all: %v)", code, got[code], want, got)
		}
	}
}

func TestExampleAlertRulesLoad(t *testing.T) {
	t.Parallel()
	rules, err := loadAlertRules("../../docs/alert-rules.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, r := range rules {
		names = append(names, r.Name)
	}
	if strings.Join(names, ",") != "connected-devices-dropped,connection-errors,throttling-errors" {
		t.Fatalf("rules %v", names)
	}
}

// TestLogsTailFollowsRecordsAndEndsOnShutdown follows records over the admin API and checks
// that shutting the hub down ends the stream at once.
func TestLogsTailFollowsRecordsAndEndsOnShutdown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	h := startTestHub(t, dir)
	af := adminFlags{}
	af.dataDir = dir
	ad, err := af.admin()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 10)
	ended := make(chan error, 1)
	go func() {
		ended <- ad.Tail(context.Background(), []string{"connections"}, []string{"error"}, func(w diag.Wire) error {
			got <- w.OperationName + " " + w.ResultType
			return nil
		})
	}()
	time.Sleep(300 * time.Millisecond)
	if _, err := mqttConnect(t, h, "nobody", "SharedAccessSignature sr=x&sig=y&se=1", nil); err == nil {
		t.Fatal("connect must fail")
	}
	select {
	case s := <-got:
		if s != "deviceConnect 401002" && s != "deviceConnect 401003" {
			t.Fatalf("tail got %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tail got nothing")
	}
	start := time.Now()
	if err := h.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("shutdown took %s with a tail open", d)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the tail did not end")
	}
}

// TestAdminTokenAndLogAnalyticsShape queries with the admin bearer token, checks the Log
// Analytics types of the columns, and that a wrong token is refused.
func TestAdminTokenAndLogAnalyticsShape(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.DataDir, cfg.HostName = t.TempDir(), "hub.test"
	cfg.HTTPSAddr, cfg.MQTTAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Trouble.AdminToken = "s3cret-token"
	h, err := Start(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Shutdown(context.Background())
	post := func(token, query string) (int, map[string]any) {
		body, _ := json.Marshal(map[string]any{"query": query, "timespan": "P1D"})
		req, _ := http.NewRequest(http.MethodPost, "http://"+h.AdminAddr+"/diagnostics/query", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	status, m := post("s3cret-token", `print n = 1, r = 1.5, s = "x", t = datetime(2025-03-04), d = 1h, b = true, j = dynamic({"a": 1})`)
	if status != 200 {
		t.Fatalf("query: %d %v", status, m)
	}
	tbl := m["tables"].([]any)[0].(map[string]any)
	var types []string
	for _, c := range tbl["columns"].([]any) {
		types = append(types, c.(map[string]any)["type"].(string))
	}
	row := tbl["rows"].([]any)[0].([]any)
	if strings.Join(types, ",") != "long,real,string,datetime,timespan,bool,dynamic" ||
		row[3] != "2025-03-04T00:00:00Z" || row[4] != "01:00:00" || row[6] != `{"a":1}` {
		t.Fatalf("columns %v row %v", types, row)
	}
	if status, _ := post("wrong", "print 1"); status != 401 {
		t.Fatalf("wrong token: %d", status)
	}
}
