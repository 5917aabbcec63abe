package httpapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/blob"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/httpapi"
	"github.com/roost-iot/roost/internal/upload"
)

// uploadFixture is a hub's HTTPS API with file uploads and the built-in blob store.
type uploadFixture struct {
	*fixture
	start time.Time
}

func newUploadFixture(t testing.TB, eng *engine.Engine, idle time.Duration) *uploadFixture {
	t.Helper()
	f := newHub(t, hubOptions{eng: eng, tls: clientCerts(), blobHost: host, uploads: true,
		api: httpapi.Config{BlobIdleTimeout: idle}})
	return &uploadFixture{fixture: f, start: time.Now().Add(-time.Second)}
}

func nodeSDKPath(id string) string {
	return "/devices/" + strings.ReplaceAll(url.QueryEscape(id), "+", "%20")
}

// initiate sends the Node SDK's getBlobSharedAccessSignature request.
func (f *uploadFixture) initiate(t testing.TB, token, dev, blobName string) (answer, upload.Started) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"blobName": blobName})
	a := f.do(t, "POST", nodeSDKPath(dev)+"/files"+v, token, map[string]string{
		"Accept": "application/json", "Content-Type": "application/json", "User-Agent": "azure-iot-device/1.18.4",
	}, string(body))
	var st upload.Started
	if a.status == 200 {
		if err := json.Unmarshal(a.body, &st); err != nil {
			t.Fatalf("initiate answer %s: %v", a.body, err)
		}
	}
	return a, st
}

// notify sends the Node SDK's notifyUploadComplete request.
func (f *uploadFixture) notify(t testing.TB, token, dev, cid string, ok bool, status int, desc string) answer {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"isSuccess": ok, "statusCode": status, "statusDescription": desc})
	return f.do(t, "POST", nodeSDKPath(dev)+"/files/notifications/"+url.PathEscape(cid)+v, token, map[string]string{
		"Content-Type": "application/json; charset=utf-8", "User-Agent": "azure-iot-device/1.18.4", "iothub-name": "hub",
	}, string(body))
}

// jsEscapePath escapes a blob URL's path as @azure/storage-blob 12.8 does (escapeURLPath):
// encodeURIComponent, then '/' and '%' restored and "'" escaped.
func jsEscapePath(p string) string {
	var sb strings.Builder
	for _, b := range []byte(p) {
		switch {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9', strings.IndexByte("-_.!~*()/%", b) >= 0:
			sb.WriteByte(b)
		default:
			fmt.Fprintf(&sb, "%%%02X", b)
		}
	}
	return sb.String()
}

// sdkUploader does what azure-iot-device 1.18's BlobUploader does with @azure/storage-blob 12.8:
// BlockBlobClient(`https://${hostName}/${containerName}/${blobName}${sasToken}`).uploadStream(
// stream, 4 MiB, 20): Put Block for each 4 MiB with a 48-character id (a UUID and a zero-padded
// index, base64), then Put Block List of them all as Latest.
type sdkUploader struct {
	hc   *http.Client
	addr string // where to connect instead of hostName
}

func (f *uploadFixture) uploader() *sdkUploader {
	return &sdkUploader{hc: f.srv.Client(), addr: f.srv.Listener.Addr().String()}
}

func (u *sdkUploader) url(st upload.Started) string {
	return "https://" + u.addr + "/" + st.ContainerName + "/" + jsEscapePath(st.BlobName) + st.SASToken
}

func (u *sdkUploader) send(method, rawURL string, hdr map[string]string, body []byte) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, rawURL, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("x-ms-version", "2020-10-02")
	req.Header.Set("x-ms-client-request-id", "3f1c9a0e-7f0a-4d1e-9a59-8c8b8f0b1f2a")
	req.Header.Set("User-Agent", "Upload To Blob via Node.js IoT Client azsdk-js-storageblob/12.8.0 (NODE-VERSION v20.20.2; Linux)")
	req.Header.Set("Accept", "application/xml")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := u.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b, nil
}

func sdkBlockID(prefix string, i int) string {
	s := prefix + fmt.Sprintf("%0*d", 48-len(prefix), i)
	return base64.StdEncoding.EncodeToString([]byte(s))
}

// uploadStream uploads data and returns the commit's status.
func (u *sdkUploader) uploadStream(t testing.TB, st upload.Started, data []byte) (int, http.Header) {
	t.Helper()
	const blockSize = 4 << 20
	prefix := "5b0d3c4e-2f9a-4b7c-8e1d-6a5f4c3b2a19"
	var ids []string
	for off, i := 0, 0; off < len(data); off, i = off+blockSize, i+1 {
		end := min(off+blockSize, len(data))
		id := sdkBlockID(prefix, i)
		ids = append(ids, id)
		resp, body, err := u.send("PUT", u.url(st)+"&comp=block&blockid="+url.QueryEscape(id),
			map[string]string{"Content-Type": "application/octet-stream"}, data[off:end])
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 201 {
			t.Fatalf("Put Block %d: %d %s", i, resp.StatusCode, body)
		}
		if resp.Header.Get("x-ms-request-id") == "" || resp.Header.Get("x-ms-version") != "2020-10-02" {
			t.Errorf("Put Block answer headers: %v", resp.Header)
		}
	}
	var sb strings.Builder
	sb.WriteString(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?><BlockList>`)
	for _, id := range ids {
		sb.WriteString("<Latest>" + id + "</Latest>")
	}
	sb.WriteString("</BlockList>")
	resp, body, err := u.send("PUT", u.url(st)+"&comp=blocklist", map[string]string{"Content-Type": "application/xml; charset=utf-8"}, []byte(sb.String()))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 201 {
		t.Fatalf("Put Block List: %d %s", resp.StatusCode, body)
	}
	return resp.StatusCode, resp.Header
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// uploadRecord waits for a FileUploadOperations record.
func (f *uploadFixture) uploadRecord(t testing.TB, op, dev, resultType string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var found map[string]any
		_ = diag.Read(context.Background(), f.eng, diag.FileUploadOperations, f.start, func(w diag.Wire) bool {
			var props map[string]any
			_ = json.Unmarshal([]byte(w.Properties), &props)
			if w.OperationName == op && w.Level == "Error" && w.ResultType == resultType && props["deviceId"] == dev {
				found = props
				found["_correlationId"] = w.CorrelationID
				return false
			}
			return true
		})
		if found != nil {
			return found
		}
		if time.Now().After(deadline) {
			var all []string
			_ = diag.Read(context.Background(), f.eng, diag.FileUploadOperations, f.start, func(w diag.Wire) bool {
				all = append(all, w.OperationName+" "+w.ResultType+" "+w.Properties)
				return true
			})
			t.Fatalf("no %s record for %s with %s; have %v", op, dev, resultType, all)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The whole round trip as the Node SDKs make it: initiate, upload a 10 MB file in three
// blocks, notify; the service reads the notification and the file.
func TestFileUploadLikeTheNodeSDK(t *testing.T) {
	t.Parallel()
	f := newUploadFixture(t, nil, 0)
	tok := f.deviceToken(t, "cam:1", "")
	a, st := f.initiate(t, tok, "cam:1", "videos/clip (1).mp4")
	if a.status != 200 || !strings.HasPrefix(a.header.Get("Content-Type"), "application/json") {
		t.Fatalf("initiate: %d %s", a.status, a.body)
	}
	var raw map[string]any
	_ = json.Unmarshal(a.body, &raw)
	for _, k := range []string{"correlationId", "hostName", "containerName", "blobName", "sasToken"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("initiate answer lacks %s: %s", k, a.body)
		}
	}
	if st.BlobName != "cam:1/videos/clip (1).mp4" || st.HostName != host || st.ContainerName != "fileupload" || !strings.HasPrefix(st.SASToken, "?") {
		t.Fatalf("initiate answer: %+v", st)
	}
	data := randomBytes(10 << 20)
	f.uploader().uploadStream(t, st, data)
	if a := f.notify(t, tok, "cam:1", st.CorrelationID, true, 201, ""); a.status != 204 {
		t.Fatalf("notify: %d %s", a.status, a.body)
	}
	svcTok := f.token(t, "service", time.Hour)
	n := f.do(t, "GET", "/messages/serviceBound/filenotifications"+v, svcTok, nil, "")
	if n.status != 200 {
		t.Fatalf("receive notification: %d %s", n.status, n.body)
	}
	etag := n.header.Values("ETag")
	if len(etag) != 1 || !strings.HasPrefix(etag[0], `"`) || !strings.HasSuffix(etag[0], `"`) {
		t.Fatalf("ETag header %v (want the quoted lock token)", n.header)
	}
	var note struct {
		DeviceID        string    `json:"deviceId"`
		BlobURI         string    `json:"blobUri"`
		BlobName        string    `json:"blobName"`
		LastUpdatedTime time.Time `json:"lastUpdatedTime"`
		BlobSizeInBytes int64     `json:"blobSizeInBytes"`
		EnqueuedTimeUtc time.Time `json:"enqueuedTimeUtc"`
	}
	if err := json.Unmarshal(n.body, &note); err != nil {
		t.Fatal(err)
	}
	if note.DeviceID != "cam:1" || note.BlobName != "cam:1/videos/clip (1).mp4" || note.BlobSizeInBytes != 10<<20 ||
		note.BlobURI != "https://hub.test/fileupload/"+blob.EscapeName("cam:1/videos/clip (1).mp4") || note.LastUpdatedTime.IsZero() || note.EnqueuedTimeUtc.IsZero() {
		t.Fatalf("notification: %+v", note)
	}
	lock := strings.Trim(etag[0], `"`)
	if a := f.do(t, "DELETE", "/messages/serviceBound/filenotifications/"+lock+v, svcTok, nil, ""); a.status != 204 {
		t.Fatalf("complete notification: %d %s", a.status, a.body)
	}
	if a := f.do(t, "GET", "/messages/servicebound/filenotifications"+v, svcTok, nil, ""); a.status != 204 {
		t.Fatalf("queue after completion: %d %s", a.status, a.body)
	}
	// The service reads the file back, over /files and over the blob endpoint with a read SAS.
	list := f.do(t, "GET", "/files"+v+"&deviceId="+url.QueryEscape("cam:1"), svcTok, nil, "")
	if list.status != 200 || !strings.Contains(string(list.body), `"blobSizeInBytes":10485760`) {
		t.Fatalf("list: %d %s", list.status, list.body)
	}
	got := f.do(t, "GET", "/files/cam:1/videos/clip%20(1).mp4"+v, svcTok, nil, "")
	if got.status != 200 || !bytes.Equal(got.body, data) {
		t.Fatalf("download: %d, %d bytes", got.status, len(got.body))
	}
	read := upload.Started{ContainerName: "fileupload", BlobName: st.BlobName, SASToken: f.store.ReadSAS(st.BlobName, time.Now().Add(time.Minute))}
	u := f.uploader()
	resp, body, err := u.send("GET", u.url(read), map[string]string{"x-ms-range": "bytes=4194300-4194309"}, nil)
	if err != nil || resp.StatusCode != 206 || !bytes.Equal(body, data[4194300:4194310]) || resp.Header.Get("x-ms-blob-type") != "BlockBlob" {
		t.Fatalf("Get Blob range: %v %d %d bytes %v", err, resp.StatusCode, len(body), resp.Header)
	}
	resp, body, err = u.send("HEAD", u.url(read), nil, nil)
	if err != nil || resp.StatusCode != 200 || len(body) != 0 || resp.Header.Get("Content-Length") != strconv.Itoa(10<<20) || resp.Header.Get("ETag") == "" {
		t.Fatalf("Get Blob Properties: %v %d %v", err, resp.StatusCode, resp.Header)
	}
	// The upload no longer counts toward the limit.
	if n, _ := f.uploads.Active(context.Background(), "cam:1"); n != 0 {
		t.Fatalf("%d uploads active after the notification", n)
	}
}

// The C SDK adds trailing slashes and puts the correlation id in the body, as Python does.
func TestFileUploadCAndPythonForms(t *testing.T) {
	t.Parallel()
	f := newUploadFixture(t, nil, 0)
	tok := f.deviceToken(t, "d1", "")
	a := f.do(t, "POST", "/devices/d1/files/?api-version=2016-11-14", tok, nil, `{"blobName":"log.txt"}`)
	if a.status != 200 {
		t.Fatalf("C initiate: %d %s", a.status, a.body)
	}
	var st upload.Started
	_ = json.Unmarshal(a.body, &st)
	// A single Put Blob, as the IoT Hub docs show.
	u := f.uploader()
	resp, body, err := u.send("PUT", u.url(st), map[string]string{"x-ms-blob-type": "BlockBlob", "Content-Type": "text/plain"}, []byte("hello"))
	if err != nil || resp.StatusCode != 201 || resp.Header.Get("ETag") == "" || resp.Header.Get("Content-MD5") == "" {
		t.Fatalf("Put Blob: %v %d %s", err, resp.StatusCode, body)
	}
	body2 := `{"correlationId":"` + st.CorrelationID + `","isSuccess":true,"statusCode":201,"statusDescription":"Created"}`
	if a := f.do(t, "POST", "/devices/d1/files/notifications/?api-version=2016-11-14", tok, nil, body2); a.status != 204 {
		t.Fatalf("C notify: %d %s", a.status, a.body)
	}
	a = f.do(t, "POST", "/devices/d1/files"+"?api-version=2019-10-01", tok, nil, `{"blobName":"py.bin"}`)
	_ = json.Unmarshal(a.body, &st)
	body3 := `{"correlationId":"` + st.CorrelationID + `","isSuccess":false,"statusCode":500,"statusDescription":"disk full"}`
	if a := f.do(t, "POST", "/devices/d1/files/notifications?api-version=2019-10-01", tok, nil, body3); a.status != 204 {
		t.Fatalf("Python notify: %d %s", a.status, a.body)
	}
	f.uploadRecord(t, upload.OpComplete, "d1", "400020")
}

func TestFileUploadEleventhIs403006(t *testing.T) {
	t.Parallel()
	f := newUploadFixture(t, nil, 0)
	tok := f.deviceToken(t, "busy", "")
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		status = map[int]int{}
		refuse answer
	)
	for i := 0; i < 11; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, _ := f.initiate(t, tok, "busy", fmt.Sprintf("f%d", i))
			mu.Lock()
			defer mu.Unlock()
			status[a.status]++
			if a.status != 200 {
				refuse = a
			}
		}()
	}
	wg.Wait()
	if status[200] != 10 || status[403] != 1 {
		t.Fatalf("statuses %v, want 10x200 and 1x403", status)
	}
	if refuse.header.Get("iothub-errorcode") != "DeviceMaximumActiveFileUploadLimitExceeded" || !errorBodyShape.Match(refuse.body) {
		t.Fatalf("refusal: %v %s", refuse.header, refuse.body)
	}
	props := f.uploadRecord(t, upload.OpInit, "busy", "403006")
	if props["protocol"] != "Https" || props["authType"] == nil || !strings.HasPrefix(props["blobUri"].(string), "https://hub.test/fileupload/busy/f") {
		t.Errorf("record properties: %v", props)
	}
	if !strings.Contains(string(refuse.body), props["_correlationId"].(string)) {
		t.Errorf("the tracking id %s is not the record's correlationId %v", refuse.body, props["_correlationId"])
	}
}

func TestFileUploadDeviceRequestsRefused(t *testing.T) {
	t.Parallel()
	f := newUploadFixture(t, nil, 0)
	tokA := f.deviceToken(t, "a", "")
	f.deviceToken(t, "b", "")
	_, stA := f.initiate(t, tokA, "a", "x")
	tests := []struct {
		name, method, path, token, body string
		status                          int
		errName                         string
	}{
		{"another device's token", "POST", "/devices/b/files" + v, tokA, `{"blobName":"x"}`, 401, ""},
		{"no token", "POST", "/devices/a/files" + v, "", `{"blobName":"x"}`, 401, ""},
		{"no api-version", "POST", "/devices/a/files", tokA, `{"blobName":"x"}`, 400, "InvalidProtocolVersion"},
		{"no blob name", "POST", "/devices/a/files" + v, tokA, `{}`, 400, "ArgumentNull"},
		{"blob name not a string", "POST", "/devices/a/files" + v, tokA, `{"blobName":7}`, 400, "ArgumentInvalid"},
		{"traversal", "POST", "/devices/a/files" + v, tokA, `{"blobName":"../b/x"}`, 400, "ArgumentInvalid"},
		{"not json", "POST", "/devices/a/files" + v, tokA, `blob`, 400, ""},
		{"unknown correlation id", "POST", "/devices/a/files/notifications/nope" + v, tokA, `{"isSuccess":true}`, 400, "InvalidFileUploadCorrelationId"},
		{"someone else's upload", "POST", "/devices/b/files/notifications/" + stA.CorrelationID + v, f.deviceToken(t, "c", ""), `{"isSuccess":true}`, 401, ""},
		{"isSuccess not a boolean", "POST", "/devices/a/files/notifications/" + stA.CorrelationID + v, tokA, `{"isSuccess":"yes"}`, 400, "InvalidFileUploadCompletionStatus"},
		{"no isSuccess", "POST", "/devices/a/files/notifications" + v, tokA, `{"correlationId":"` + stA.CorrelationID + `"}`, 400, "InvalidFileUploadCompletionStatus"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := f.do(t, tc.method, tc.path, tc.token, nil, tc.body)
			if a.status != tc.status || tc.errName != "" && a.header.Get("iothub-errorcode") != tc.errName {
				t.Fatalf("got %d %s %s, want %d %s", a.status, a.header.Get("iothub-errorcode"), a.body, tc.status, tc.errName)
			}
		})
	}
	// Device b cannot complete a's upload with its own token either.
	tokB := f.deviceToken(t, "b2", "")
	if a := f.notify(t, tokB, "b2", stA.CorrelationID, true, 201, ""); a.status != 400 || a.header.Get("iothub-errorcode") != "InvalidFileUploadCorrelationId" {
		t.Fatalf("b2 completes a's upload: %d %s", a.status, a.body)
	}
	f.uploadRecord(t, upload.OpComplete, "b2", "400015")
	if n, _ := f.uploads.Active(context.Background(), "a"); n != 1 {
		t.Fatalf("a's upload was affected: %d active", n)
	}
}

// storageError decodes a Blob service error body.
func storageError(t testing.TB, body []byte) (code, msg string) {
	t.Helper()
	var e struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	if err := xml.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body is not the Blob service's XML: %v: %s", err, body)
	}
	return e.Code, e.Message
}

func TestBlobEndpointRefusals(t *testing.T) {
	t.Parallel()
	f := newUploadFixture(t, nil, 0)
	tok := f.deviceToken(t, "d1", "")
	_, st := f.initiate(t, tok, "d1", "file.bin")
	_, other := f.initiate(t, tok, "d1", "other.bin")
	u := f.uploader()
	base := "https://" + u.addr + "/fileupload/"
	expired := f.store.Grant(st.BlobName, time.Now().Add(-time.Minute)).SASToken
	good := u.url(st)
	blockList := func(n int) []byte {
		var sb strings.Builder
		sb.WriteString("<BlockList>")
		for i := 0; i < n; i++ {
			sb.WriteString("<Latest>" + sdkBlockID("p", i) + "</Latest>")
		}
		sb.WriteString("</BlockList>")
		return []byte(sb.String())
	}
	tests := []struct {
		name, method, url string
		hdr               map[string]string
		body              []byte
		status            int
		code              string
	}{
		{"no SAS", "PUT", base + "d1/file.bin?comp=block&blockid=" + sdkBlockID("p", 0), nil, []byte("x"), 403, blob.CodeAuthenticationFailed},
		{"expired SAS", "PUT", base + "d1/file.bin" + expired + "&comp=block&blockid=" + url.QueryEscape(sdkBlockID("p", 0)), nil, []byte("x"), 403, blob.CodeAuthenticationFailed},
		{"SAS of another blob", "PUT", base + "d1/file.bin" + other.SASToken + "&comp=block&blockid=" + url.QueryEscape(sdkBlockID("p", 0)), nil, []byte("x"), 403, blob.CodeAuthenticationFailed},
		{"tampered permissions", "GET", strings.Replace(good, "sp=cw", "sp=rcw", 1), nil, nil, 403, blob.CodeAuthenticationFailed},
		{"read with the upload SAS", "GET", good, nil, nil, 403, blob.CodeAuthorizationPermission},
		{"dot-dot path", "PUT", base + "d1/../d2/file.bin" + st.SASToken + "&comp=block&blockid=" + url.QueryEscape(sdkBlockID("p", 0)), nil, []byte("x"), 400, blob.CodeInvalidResourceName},
		{"escaped dot-dot path", "PUT", base + "d1/%2E%2E/d2/file.bin" + st.SASToken, map[string]string{"x-ms-blob-type": "BlockBlob"}, []byte("x"), 400, blob.CodeInvalidResourceName},
		{"double slash", "PUT", base + "d1//file.bin" + st.SASToken, map[string]string{"x-ms-blob-type": "BlockBlob"}, []byte("x"), 400, blob.CodeInvalidResourceName},
		{"no block id", "PUT", good + "&comp=block", nil, []byte("x"), 400, blob.CodeMissingRequiredQueryParameter},
		{"bad block id", "PUT", good + "&comp=block&blockid=%21%21", nil, []byte("x"), 400, blob.CodeInvalidQueryParameterValue},
		{"unknown comp", "PUT", good + "&comp=appendblock", nil, []byte("x"), 400, blob.CodeInvalidQueryParameterValue},
		{"no blob type", "PUT", good, nil, []byte("x"), 400, blob.CodeMissingRequiredHeader},
		{"page blob", "PUT", good, map[string]string{"x-ms-blob-type": "PageBlob"}, []byte("x"), 400, blob.CodeInvalidHeaderValue},
		{"bad MD5 header", "PUT", good, map[string]string{"x-ms-blob-type": "BlockBlob", "Content-MD5": "nope"}, []byte("x"), 400, blob.CodeInvalidHeaderValue},
		{"block list naming unknown blocks", "PUT", good + "&comp=blocklist", nil, blockList(2), 400, blob.CodeInvalidBlockList},
		{"huge block list", "PUT", good + "&comp=blocklist", nil, blockList(blob.MaxCommittedBlocks + 1), 400, blob.CodeInvalidBlockList},
		{"block list not XML", "PUT", good + "&comp=blocklist", nil, []byte("{}"), 400, blob.CodeInvalidXMLDocument},
		{"delete", "DELETE", good, nil, nil, 405, blob.CodeUnsupportedHTTPVerb},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body, err := u.send(tc.method, tc.url, tc.hdr, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status || resp.Header.Get("x-ms-error-code") != tc.code {
				t.Fatalf("got %d %s %s, want %d %s", resp.StatusCode, resp.Header.Get("x-ms-error-code"), body, tc.status, tc.code)
			}
			code, msg := storageError(t, body)
			if code != tc.code || !strings.Contains(msg, "RequestId:"+resp.Header.Get("x-ms-request-id")) || !strings.Contains(msg, "\nTime:") {
				t.Fatalf("error body %s", body)
			}
		})
	}
	// Nothing was written: not the blob, not a block.
	if _, err := f.store.Stat(context.Background(), st.BlobName); err == nil {
		t.Fatal("a refused request stored the blob")
	}
	rec := f.uploadRecord(t, upload.OpUpload, "d1", "403000")
	if rec["storageErrorCode"] == nil || !strings.HasPrefix(rec["blobUri"].(string), "https://hub.test/fileupload/d1/") {
		t.Errorf("blob record: %v", rec)
	}
	f.uploadRecord(t, upload.OpRead, "d1", "403000")
	f.uploadRecord(t, upload.OpUpload, "d1", "400000")
}

// A client that stops halfway, by closing the connection or by going silent, stores nothing.
func TestBlobUploadsThatStopHalfway(t *testing.T) {
	t.Parallel()
	f := newUploadFixture(t, nil, 300*time.Millisecond)
	tok := f.deviceToken(t, "d1", "")
	_, st := f.initiate(t, tok, "d1", "half.bin")
	u := f.uploader()
	target, _ := url.Parse(u.url(st) + "&comp=block&blockid=" + url.QueryEscape(sdkBlockID("p", 0)))
	for _, mode := range []string{"close", "stall"} {
		conn, err := tls.Dial("tcp", u.addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test server
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nx-ms-version: 2020-10-02\r\n\r\n", target.RequestURI(), host, 1<<20)
		_, _ = conn.Write(randomBytes(300 << 10))
		if mode == "close" {
			_ = conn.Close()
			continue
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(conn) // the server gives up after the idle time and closes
		_ = conn.Close()
		if len(b) > 0 && !strings.Contains(string(b), "OperationTimedOut") {
			t.Errorf("stalled upload answer: %q", b)
		}
	}
	f.uploadRecord(t, upload.OpUpload, "d1", "408000")
	list := fmt.Sprintf(`<BlockList><Latest>%s</Latest></BlockList>`, sdkBlockID("p", 0))
	resp, body, err := u.send("PUT", u.url(st)+"&comp=blocklist", nil, []byte(list))
	if err != nil || resp.StatusCode != 400 || resp.Header.Get("x-ms-error-code") != blob.CodeInvalidBlockList {
		t.Fatalf("a half-sent block can be committed: %v %d %s", err, resp.StatusCode, body)
	}
}

func TestFileNotificationsOverREST(t *testing.T) {
	t.Parallel()
	f := newUploadFixture(t, nil, 0)
	ctx := context.Background()
	tok := f.deviceToken(t, "d1", "")
	for i := 0; i < 2; i++ {
		_, st := f.initiate(t, tok, "d1", fmt.Sprintf("f%d", i))
		if _, err := f.store.PutBlob(ctx, st.BlobName, strings.NewReader("x"), 1, blob.Headers{}, blob.Conditions{}, nil); err != nil {
			t.Fatal(err)
		}
		if a := f.notify(t, tok, "d1", st.CorrelationID, true, 201, ""); a.status != 204 {
			t.Fatalf("notify: %d %s", a.status, a.body)
		}
	}
	svc := f.token(t, "service", time.Hour)
	if a := f.do(t, "GET", "/messages/serviceBound/filenotifications"+v, f.token(t, "registryRead", time.Hour), nil, ""); a.status != 401 {
		t.Fatalf("a policy without ServiceConnect: %d", a.status)
	}
	first := f.do(t, "GET", "/messages/serviceBound/filenotifications"+v, svc, nil, "")
	lock := strings.Trim(first.header.Get("ETag"), `"`)
	if first.status != 200 || first.header.Get("iothub-deliverycount") != "1" {
		t.Fatalf("receive: %d %v", first.status, first.header)
	}
	if a := f.do(t, "POST", "/messages/serviceBound/filenotifications/"+lock+"/abandon"+v, svc, nil, ""); a.status != 204 {
		t.Fatalf("abandon: %d %s", a.status, a.body)
	}
	if a := f.do(t, "DELETE", "/messages/serviceBound/filenotifications/"+lock+v, svc, nil, ""); a.status != 412 || a.header.Get("iothub-errorcode") != "DeviceMessageLockLost" {
		t.Fatalf("complete after abandon: %d %s", a.status, a.body)
	}
	if a := f.do(t, "DELETE", "/messages/serviceBound/filenotifications/not-a-lock"+v, svc, nil, ""); a.status != 400 || a.header.Get("iothub-errorcode") != "ArgumentInvalid" {
		t.Fatalf("malformed lock token: %d %s", a.status, a.body)
	}
	seen := map[string]bool{}
	for i := 0; i < 2; i++ {
		a := f.do(t, "GET", "/messages/serviceBound/filenotifications"+v, svc, nil, "")
		if a.status != 200 {
			t.Fatalf("receive %d: %d", i, a.status)
		}
		seen[string(a.body)] = true
		if a := f.do(t, "DELETE", "/messages/serviceBound/filenotifications/"+strings.Trim(a.header.Get("ETag"), `"`)+v, svc, nil, ""); a.status != 204 {
			t.Fatalf("complete: %d %s", a.status, a.body)
		}
	}
	if len(seen) != 2 {
		t.Fatalf("received the same notification twice: %v", seen)
	}
	if a := f.do(t, "GET", "/messages/serviceBound/filenotifications"+v, svc, nil, ""); a.status != 204 {
		t.Fatalf("empty queue: %d %s", a.status, a.body)
	}
}

// BenchmarkBlobUpload measures a 100 MB upload through the built-in store over TLS on loopback,
// the way the Node SDK sends it (4 MiB blocks, 20 in flight), from the first block to the
// committed blob.
//
//	go test -run '^$' -bench BlobUpload -benchtime 5x ./internal/httpapi/
func BenchmarkBlobUpload(b *testing.B) { benchBlobUpload(b, nil) }

// BenchmarkBlobUploadExternal is BenchmarkBlobUpload with the engine in a separate nats-server
// process on loopback, as a node of a cluster has it: every chunk crosses a TCP connection.
func BenchmarkBlobUploadExternal(b *testing.B) {
	benchBlobUpload(b, enginetest.StartExternal(b).Connect(b))
}

func benchBlobUpload(b *testing.B, eng *engine.Engine) {
	f := newUploadFixture(b, eng, 0)
	tok := f.deviceToken(b, "bench", "")
	const size = 100 << 20
	const blockSize = 4 << 20
	data := randomBytes(size)
	u := f.uploader()
	tr := u.hc.Transport.(*http.Transport)
	tr.MaxConnsPerHost, tr.MaxIdleConnsPerHost = 0, 20
	// Node writes a block in one call and its TLS layer sends full 16 KiB records; Go's client
	// would cut the body into 4 KiB records through its default write buffer.
	tr.WriteBufferSize = 64 << 10
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		_, st := f.initiate(b, tok, "bench", fmt.Sprintf("big-%d.bin", i))
		b.StartTimer()
		n := size / blockSize
		sem := make(chan struct{}, 20)
		var wg sync.WaitGroup
		ids := make([]string, n)
		for j := 0; j < n; j++ {
			ids[j] = sdkBlockID("5b0d3c4e-2f9a-4b7c-8e1d-6a5f4c3b2a19", j)
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				resp, body, err := u.send("PUT", u.url(st)+"&comp=block&blockid="+url.QueryEscape(ids[j]), nil, data[j*blockSize:(j+1)*blockSize])
				if err != nil || resp.StatusCode != 201 {
					b.Errorf("block %d: %v %s", j, err, body)
				}
			}()
		}
		wg.Wait()
		var sb strings.Builder
		sb.WriteString("<BlockList>")
		for _, id := range ids {
			sb.WriteString("<Latest>" + id + "</Latest>")
		}
		sb.WriteString("</BlockList>")
		resp, body, err := u.send("PUT", u.url(st)+"&comp=blocklist", nil, []byte(sb.String()))
		if err != nil || resp.StatusCode != 201 {
			b.Fatalf("commit: %v %s", err, body)
		}
		b.StopTimer()
		if a := f.notify(b, tok, "bench", st.CorrelationID, true, 201, ""); a.status != 204 {
			b.Fatalf("notify: %d", a.status)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(size)*float64(b.N)/b.Elapsed().Seconds()/1e6, "MB/s")
}
