package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/certs"
	"github.com/roost-iot/roost/internal/config"
)

// azuriteVersion is the Azurite the test installs from npm.
const azuriteVersion = "3.37.0"

// azuriteKey is Azurite's published development account key.
const azuriteKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

// installAzurite installs Azurite with npm into a directory under the system temp dir, once
// per machine (an install takes about 30 s), and returns the azurite-blob command.
func installAzurite(t *testing.T) string {
	t.Helper()
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm is not installed; this test runs Roost against Azurite, the Azure Storage emulator from npm")
	}
	dir := filepath.Join(os.TempDir(), "roost-test-azurite-"+azuriteVersion)
	bin := filepath.Join(dir, "node_modules", ".bin", "azurite-blob")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	tmp, err := os.MkdirTemp(os.TempDir(), "roost-test-azurite-install-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "azurite@"+azuriteVersion)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("could not install Azurite from npm (offline?): %v\n%s", err, out)
	}
	// Install beside, then move into place, so a concurrent or interrupted install never leaves
	// a half-installed directory where the next run looks.
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(bin); serr != nil {
			t.Fatalf("install Azurite: %v", err)
		}
	}
	return bin
}

// startAzurite runs Azurite's blob service over TLS with the certificate and key given, on a
// random loopback port, and stops it when the test ends.
func startAzurite(t *testing.T, bin, certFile, keyFile string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	work := t.TempDir()
	cmd := exec.Command(bin, "--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(port), "--location", work,
		"--cert", certFile, "--key", keyFile, "--skipApiVersionCheck", "--disableTelemetry", "--silent")
	logf, err := os.Create(filepath.Join(work, "azurite.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start Azurite: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logf.Close()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return port
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(work, "azurite.log"))
			t.Fatalf("Azurite did not start: %v\n%s", err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// With --blob-connection-string the hub hands out SAS URIs for an external account. Against a
// real Azure-Storage-compatible server, Azurite: the device uploads there directly with the
// SAS (a SAS for another blob is refused by Azurite itself), notifies the hub, and the hub
// confirms the blob in Azurite, queues the notification and streams the file back.
func TestFileUploadsToAzurite(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("installs and runs Azurite")
	}
	bin := installAzurite(t)
	dataDir := t.TempDir()
	// The hub's own certificate names 127.0.0.1, and the hub trusts its CA for the storage
	// account: Azurite serves it.
	tlsDir := filepath.Join(dataDir, "tls")
	if _, err := certs.Load(certs.Options{Dir: tlsDir, Hostnames: []string{"hub.test"}}); err != nil {
		t.Fatal(err)
	}
	port := startAzurite(t, bin, filepath.Join(tlsDir, certs.ServerCertFileName), filepath.Join(tlsDir, certs.ServerKeyFileName))

	cfg := config.Default()
	cfg.DataDir, cfg.HostName = dataDir, "hub.test"
	cfg.HTTPSAddr, cfg.MQTTAddr, cfg.AdminAddr = "127.0.0.1:0", "", ""
	cfg.BlobContainer = "device-uploads"
	cfg.BlobConnectionString = fmt.Sprintf("DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey=%s;BlobEndpoint=https://127.0.0.1:%d/devstoreaccount1;", azuriteKey, port)
	h, err := Start(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Shutdown(context.Background())
	if h.Blobs != nil {
		t.Fatal("the built-in store runs although a storage account is configured")
	}

	dev := newDeviceHTTP(t, h, "cam-9")
	status, st := dev.initiate(t, "clips/a b.bin")
	wantHost := fmt.Sprintf("127.0.0.1:%d/devstoreaccount1", port)
	if status != 200 || st.HostName != wantHost || st.ContainerName != "device-uploads" || st.BlobName != "cam-9/clips/a b.bin" {
		t.Fatalf("initiate: %d %+v", status, st)
	}
	_, other := dev.initiate(t, "other.bin")

	pem, err := os.ReadFile(filepath.Join(tlsDir, certs.CAFileName))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 30 * time.Second}
	// What @azure/storage-blob does with https://{hostName}/{containerName}/{blobName}{sasToken}.
	blobURL := func(s started) string {
		return "https://" + s.HostName + "/" + s.ContainerName + "/" + strings.ReplaceAll(s.BlobName, " ", "%20") + s.SASToken
	}
	put := func(u string, body []byte, hdr map[string]string) (int, string) {
		req, _ := http.NewRequest("PUT", u, bytes.NewReader(body))
		req.Header.Set("x-ms-version", "2020-10-02")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	data := bytes.Repeat([]byte("azurite!"), 1<<17) // 1 MiB in two blocks
	var list strings.Builder
	list.WriteString(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?><BlockList>`)
	for i := 0; i < 2; i++ {
		id := base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("%048d", i)))
		if s, body := put(blobURL(st)+"&comp=block&blockid="+strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D").Replace(id),
			data[i*len(data)/2:(i+1)*len(data)/2], nil); s != 201 {
			t.Fatalf("Put Block to Azurite: %d %s", s, body)
		}
		list.WriteString("<Latest>" + id + "</Latest>")
	}
	list.WriteString("</BlockList>")
	if s, body := put(blobURL(st)+"&comp=blocklist", []byte(list.String()), nil); s != 201 {
		t.Fatalf("Put Block List to Azurite: %d %s", s, body)
	}
	// The SAS is scoped to one blob: Azurite refuses it for another.
	wrong := st
	wrong.BlobName = other.BlobName
	if s, body := put(blobURL(wrong), []byte("x"), map[string]string{"x-ms-blob-type": "BlockBlob"}); s != 403 {
		t.Fatalf("Azurite accepted a SAS for another blob: %d %s", s, body)
	}
	if s := dev.notify(t, st.CorrelationID, true); s != 204 {
		t.Fatalf("notify: %d", s)
	}
	out, errs, code := run(t, "files", "notifications", "--output", "json", "--data-dir="+dataDir)
	if code != 0 || !strings.Contains(out, `"blobName": "cam-9/clips/a b.bin"`) || !strings.Contains(out, `"blobSizeInBytes": 1048576`) ||
		!strings.Contains(out, wantHost+"/device-uploads/cam-9/clips/a%20b.bin") {
		t.Fatalf("notification: %d %s %s", code, out, errs)
	}
	out, errs, code = run(t, "files", "get", "cam-9/clips/a b.bin", "--out", "-", "--data-dir="+dataDir)
	if code != 0 || out != string(data) {
		t.Fatalf("files get through the hub from Azurite: %d, %d bytes, %s", code, len(out), errs)
	}
	// A success reported for a blob Azurite does not have is logged and sends no notification.
	if s := dev.notify(t, other.CorrelationID, true); s != 204 {
		t.Fatalf("notify without a blob: %d", s)
	}
	_, errs, _ = run(t, "files", "notifications", "--data-dir="+dataDir)
	if !strings.Contains(errs, "no file upload notifications") {
		t.Fatalf("a notification for a missing blob: %s", errs)
	}
}
