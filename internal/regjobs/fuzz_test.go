package regjobs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"
)

// FuzzRequest: any POST /jobs/create body is either refused with an error or becomes a job with
// a type, container URIs that parse and blob names the store accepts; never a panic.
func FuzzRequest(f *testing.F) {
	f.Add([]byte(`{"type":"export","outputBlobContainerUri":"https://a.blob.core.windows.net/c?sig=x","excludeKeysInExport":true}`))
	f.Add([]byte(`{"type":"import","inputBlobContainerUri":"http://127.0.0.1:10000/devstoreaccount1/c?sig=x","outputBlobContainerUri":"https://h/c","inputBlobName":"a/b.txt"}`))
	f.Add([]byte(`{"type":"Export","outputBlobContainerUri":"https://h/c","excludeKeysInExport":"false","outputBlobName":"../x"}`))
	s := &Service{}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req Request
		if json.Unmarshal(body, &req) != nil {
			return
		}
		job, err := s.check(req)
		if err != nil {
			return
		}
		if job.Type != TypeExport && job.Type != TypeImport || job.OutputBlobName == "" {
			t.Fatalf("accepted %+v", job)
		}
		if _, err := parseContainer(job.OutputBlobContainerURI); err != nil {
			t.Fatalf("accepted an output URI that does not parse: %q", job.OutputBlobContainerURI)
		}
	})
}

// FuzzReadLine: lines come back in order, none longer than maxLine, and short inputs are read
// back byte for byte.
func FuzzReadLine(f *testing.F) {
	f.Add([]byte("a\nb\n\nc"))
	f.Add(bytes.Repeat([]byte("x"), 70000))
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(in), 16)
		var out []byte
		for {
			line, err := readLine(br)
			if len(line) > maxLine {
				t.Fatalf("line of %d bytes", len(line))
			}
			out = append(out, line...)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if len(in) < maxLine && !bytes.Equal(in, out) {
			t.Fatalf("read %q back as %q", in, out)
		}
	})
}
