package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/config"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/sas"
)

// deviceHTTP is a device talking HTTPS to one hub node, as the SDKs' file upload code does.
type deviceHTTP struct {
	h     *Hub
	hc    *http.Client
	id    string
	token string
}

func newDeviceHTTP(t *testing.T, h *Hub, id string) *deviceHTTP {
	t.Helper()
	ctx := context.Background()
	d, err := h.Registry.GetDevice(ctx, id)
	if err != nil {
		if d, err = h.Registry.CreateDevice(ctx, registry.Device{DeviceID: id}); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := sas.Sign(sas.DeviceResource(h.Config.HostName, id, ""), d.Authentication.SymmetricKey.PrimaryKey, "", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(h.TLS.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: h.Config.HostName}}
	t.Cleanup(tr.CloseIdleConnections)
	return &deviceHTTP{h: h, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}, id: id, token: tok}
}

func (d *deviceHTTP) do(t *testing.T, method, path string, hdr map[string]string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "https://"+dialable(d.h.HTTPSAddr)+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

type started struct {
	CorrelationID string `json:"correlationId"`
	HostName      string `json:"hostName"`
	ContainerName string `json:"containerName"`
	BlobName      string `json:"blobName"`
	SASToken      string `json:"sasToken"`
}

func (d *deviceHTTP) initiate(t *testing.T, name string) (int, started) {
	t.Helper()
	status, _, body := d.do(t, "POST", "/devices/"+d.id+"/files?api-version=2021-04-12",
		map[string]string{"Authorization": d.token, "Content-Type": "application/json"}, []byte(`{"blobName":"`+name+`"}`))
	var st started
	if status == 200 {
		_ = json.Unmarshal(body, &st)
	}
	return status, st
}

// upload puts the file with one Put Blob to the blob endpoint the answer names, through this
// node's listener.
func (d *deviceHTTP) upload(t *testing.T, st started, data []byte) (int, []byte) {
	t.Helper()
	if st.HostName != d.h.Config.HostName {
		t.Fatalf("hostName %q, want the hub's name", st.HostName)
	}
	status, _, body := d.do(t, "PUT", "/"+st.ContainerName+"/"+st.BlobName+st.SASToken, map[string]string{"x-ms-blob-type": "BlockBlob"}, data)
	return status, body
}

func (d *deviceHTTP) notify(t *testing.T, cid string, ok bool) int {
	t.Helper()
	status, _, body := d.do(t, "POST", "/devices/"+d.id+"/files/notifications/"+cid+"?api-version=2021-04-12",
		map[string]string{"Authorization": d.token, "Content-Type": "application/json; charset=utf-8"},
		[]byte(fmt.Sprintf(`{"isSuccess":%v,"statusCode":201,"statusDescription":""}`, ok)))
	if status != 204 {
		t.Logf("notify: %d %s", status, body)
	}
	return status
}

func TestCLIFilesReadsUploadsAndNotifications(t *testing.T) {
	t.Parallel()
	h, dd := startCLIHub(t)
	dev := newDeviceHTTP(t, h, "cam-1")
	status, st := dev.initiate(t, "shots/one.jpg")
	if status != 200 || st.ContainerName != "fileupload" || st.BlobName != "cam-1/shots/one.jpg" {
		t.Fatalf("initiate: %d %+v", status, st)
	}
	payload := bytes.Repeat([]byte("jpeg"), 5000)
	if s, body := dev.upload(t, st, payload); s != 201 {
		t.Fatalf("upload: %d %s", s, body)
	}
	if s := dev.notify(t, st.CorrelationID, true); s != 204 {
		t.Fatalf("notify: %d", s)
	}

	out, errs, code := run(t, "files", "list", "cam-1", dd)
	if code != 0 || !strings.Contains(out, "cam-1/shots/one.jpg") || !strings.Contains(out, "20000") {
		t.Fatalf("files list: %d %s %s", code, out, errs)
	}
	dest := filepath.Join(t.TempDir(), "got.jpg")
	if _, errs, code = run(t, "files", "get", "cam-1/shots/one.jpg", "--out", dest, dd); code != 0 {
		t.Fatalf("files get: %d %s", code, errs)
	}
	if b, _ := os.ReadFile(dest); !bytes.Equal(b, payload) {
		t.Fatalf("downloaded %d bytes, want %d", len(b), len(payload))
	}
	if _, errs, code = run(t, "files", "get", "cam-1/none.jpg", "--out", filepath.Join(t.TempDir(), "x"), dd); code != 1 || !strings.Contains(errs, "404") {
		t.Fatalf("files get of a missing file: %d %s", code, errs)
	}
	out, _, code = run(t, "files", "notifications", "--peek", "--output", "json", dd)
	if code != 0 || !strings.Contains(out, `"blobName": "cam-1/shots/one.jpg"`) || !strings.Contains(out, `"blobSizeInBytes": 20000`) {
		t.Fatalf("notifications --peek: %d %s", code, out)
	}
	out, _, code = run(t, "files", "notifications", dd)
	if code != 0 || !strings.Contains(out, "cam-1/shots/one.jpg") {
		t.Fatalf("notifications: %d %s", code, out)
	}
	_, errs, code = run(t, "files", "notifications", dd)
	if code != 0 || !strings.Contains(errs, "no file upload notifications") {
		t.Fatalf("notifications after completing: %d %s", code, errs)
	}
}

// Two nodes on one NATS cluster behind one host name, as behind a load balancer: the device's
// limit and its uploads are the cluster's, the blocks of one blob go through both nodes'
// listeners in turn, the commit through one, and the blob reads the same through either; the
// notification is readable from either node.
func TestFileUploadsAcrossNodes(t *testing.T) {
	t.Parallel()
	ext := enginetest.StartExternal(t)
	start := func(dir string) *Hub {
		cfg := config.Default()
		cfg.DataDir, cfg.HostName = dir, "hub.test"
		cfg.HTTPSAddr, cfg.MQTTAddr, cfg.AdminAddr = "127.0.0.1:0", "", ""
		cfg.NATSURLs = []string{ext.URL}
		h, err := Start(context.Background(), cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.Shutdown(context.Background()) })
		return h
	}
	dirA, dirB := t.TempDir(), t.TempDir()
	a, b := start(dirA), start(dirB)
	devA, devB := newDeviceHTTP(t, a, "roam"), newDeviceHTTP(t, b, "roam")
	var sts []started
	for i := 0; i < 10; i++ {
		d := devA
		if i%2 == 1 {
			d = devB
		}
		s, st := d.initiate(t, fmt.Sprintf("f%d", i))
		if s != 200 {
			t.Fatalf("initiate %d: %d", i, s)
		}
		sts = append(sts, st)
	}
	if s, _ := devB.initiate(t, "eleventh"); s != 403 {
		t.Fatalf("11th upload through the other node: %d", s)
	}
	// Six blocks of 300 KB, each through the other node than the one before, committed
	// through node a.
	st := sts[0]
	blobPath := "/" + st.ContainerName + "/" + st.BlobName + st.SASToken
	var want []byte
	var list strings.Builder
	list.WriteString(`<?xml version="1.0" encoding="utf-8"?><BlockList>`)
	for i := 0; i < 6; i++ {
		block := bytes.Repeat([]byte{byte('a' + i)}, 300_000)
		want = append(want, block...)
		id := base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("block-%04d", i)))
		list.WriteString("<Latest>" + id + "</Latest>")
		d := []*deviceHTTP{devA, devB}[i%2]
		if s, _, body := d.do(t, "PUT", blobPath+"&comp=block&blockid="+url.QueryEscape(id), nil, block); s != 201 {
			t.Fatalf("put block %d through node %d: %d %s", i, i%2, s, body)
		}
	}
	list.WriteString("</BlockList>")
	if s, _, body := devA.do(t, "PUT", blobPath+"&comp=blocklist", map[string]string{"Content-Type": "application/xml"}, []byte(list.String())); s != 201 {
		t.Fatalf("put block list: %d %s", s, body)
	}
	// Read through node b, with a read SAS (Get Blob Properties, then a range across blocks).
	rsas := b.Blobs.ReadSAS(st.BlobName, time.Now().Add(time.Hour))
	readPath := "/" + st.ContainerName + "/" + st.BlobName + rsas
	if s, h, _ := devB.do(t, "HEAD", readPath, nil, nil); s != 200 || h.Get("Content-Length") != fmt.Sprint(len(want)) {
		t.Fatalf("properties through node b: %d %v", s, h)
	}
	if s, _, body := devB.do(t, "GET", readPath, map[string]string{"x-ms-range": "bytes=299990-900009"}, nil); s != 206 || !bytes.Equal(body, want[299_990:900_010]) {
		t.Fatalf("range through node b: %d, %d bytes", s, len(body))
	}
	if s := devB.notify(t, st.CorrelationID, true); s != 204 {
		t.Fatalf("notify through the other node: %d", s)
	}
	if s, _ := devB.initiate(t, "eleventh"); s != 200 {
		t.Fatalf("the completed upload still counts: %d", s)
	}
	out, errs, code := run(t, "files", "notifications", "--output", "json", "--data-dir="+dirA)
	if code != 0 || !strings.Contains(out, "roam/f0") || !strings.Contains(out, fmt.Sprintf(`"blobSizeInBytes": %d`, len(want))) {
		t.Fatalf("notification through node a: %d %s %s", code, out, errs)
	}
	// Both nodes list and serve the file; neither holds it.
	for _, dir := range []string{dirA, dirB} {
		out, _, code = run(t, "files", "list", "--data-dir="+dir, "--output", "json")
		if code != 0 || !strings.Contains(out, "roam/f0") || strings.Contains(out, `"node"`) {
			t.Fatalf("list through %s: %d %s", dir, code, out)
		}
		out, errs, code = run(t, "files", "get", "roam/f0", "--out", "-", "--data-dir="+dir)
		if code != 0 || out != string(want) {
			t.Fatalf("get through %s: %d, %d bytes, %s", dir, code, len(out), errs)
		}
	}
	// A Put Blob through node b is read through node a.
	if s, body := devB.upload(t, sts[1], []byte("hello")); s != 201 {
		t.Fatalf("upload: %d %s", s, body)
	}
	out, errs, code = run(t, "files", "get", "roam/f1", "--out", "-", "--data-dir="+dirA)
	if code != 0 || out != "hello" {
		t.Fatalf("get through node a: %d %q %s", code, out, errs)
	}
}
