package regjobs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"sync/atomic"

	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/registry"
)

// exportLine is one device in devices.txt, in the shape IoT Hub exports (ExportImportDevice):
// what an import needs to create the device again, keys included unless excluded.
type exportLine struct {
	ID             string                   `json:"id"`
	ETag           string                   `json:"eTag"`
	Status         string                   `json:"status"`
	StatusReason   *string                  `json:"statusReason,omitempty"`
	Authentication *registry.Authentication `json:"authentication,omitempty"`
	TwinETag       string                   `json:"twinETag,omitempty"`
	Tags           json.RawMessage          `json:"tags,omitempty"`
	Properties     json.RawMessage          `json:"properties,omitempty"`
	Capabilities   *registry.Capabilities   `json:"capabilities,omitempty"`
	DeviceScope    *string                  `json:"deviceScope,omitempty"`
	ParentScopes   []string                 `json:"parentScopes,omitempty"`
}

// export writes every device identity into the output container's blob, one JSON line each.
// The lines go to a temporary file first, so that the blob is written in one Put Blob.
func (s *Service) export(ctx context.Context, job Job, progress *atomic.Int64) error {
	out, err := s.openContainer(job.OutputBlobContainerURI)
	if err != nil {
		return err
	}
	stats, err := s.cfg.Registry.Statistics(ctx)
	if err != nil {
		return err
	}
	total := max(stats.TotalDeviceCount, 1)
	tmp, err := os.CreateTemp("", "roost-export-*.txt")
	if err != nil {
		return errcode.Wrap(errcode.ServerError, err, "could not create the export's temporary file")
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	w := bufio.NewWriter(tmp)
	var (
		done    int
		lineErr error
	)
	err = s.cfg.Registry.EachDevice(ctx, func(d registry.Device) bool {
		line, err := s.exportDevice(ctx, d, job.ExcludeKeysInExport)
		if err != nil {
			lineErr = err
			return false
		}
		w.Write(line)
		w.WriteByte('\n')
		done++
		progress.Store(int64(min(99, done*100/total)))
		return ctx.Err() == nil
	})
	if err == nil {
		err = lineErr
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return errcode.Wrap(errcode.ServerError, err, "could not write the export's temporary file")
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err == nil {
		_, err = tmp.Seek(0, io.SeekStart)
	}
	if err != nil {
		return errcode.Wrap(errcode.ServerError, err, "could not read the export's temporary file")
	}
	return out.put(ctx, job.OutputBlobName, tmp, size)
}

func (s *Service) exportDevice(ctx context.Context, d registry.Device, excludeKeys bool) ([]byte, error) {
	l := exportLine{ID: d.DeviceID, ETag: d.ETag, Status: d.Status, StatusReason: d.StatusReason,
		Capabilities: &d.Capabilities, DeviceScope: d.DeviceScope, ParentScopes: d.ParentScopes}
	auth := d.Authentication
	if excludeKeys && auth.SymmetricKey != nil {
		auth.SymmetricKey = &registry.SymmetricKey{}
	}
	l.Authentication = &auth
	if s.cfg.Twins != nil {
		tw, err := s.cfg.Twins.Get(ctx, d.DeviceID, "")
		if err != nil && !errcode.Is(err, errcode.DeviceNotFound) {
			return nil, err
		}
		if err == nil {
			raw, err := json.Marshal(tw)
			if err != nil {
				return nil, errcode.Wrap(errcode.ServerError, err, "could not encode a twin")
			}
			var doc struct {
				ETag       string          `json:"etag"`
				Tags       json.RawMessage `json:"tags"`
				Properties json.RawMessage `json:"properties"`
			}
			_ = json.Unmarshal(raw, &doc)
			l.TwinETag, l.Tags, l.Properties = doc.ETag, doc.Tags, doc.Properties
		}
	}
	return json.Marshal(l)
}

// importError is one line of importErrors.log.
type importError struct {
	Line        int    `json:"line"`
	DeviceID    string `json:"deviceId,omitempty"`
	ModuleID    string `json:"moduleId,omitempty"`
	ErrorCode   string `json:"errorCode"`
	ErrorStatus string `json:"errorStatus"`
}

// maxLine is the longest line an import reads: a device with a full twin is well under it.
const maxLine = 1 << 20

// importDevices applies every line of the input blob to the registry, and writes the lines that
// failed into the output container's importErrors.log (empty when all succeeded). A line that
// fails does not stop the job; a blob that cannot be read fails it.
func (s *Service) importDevices(ctx context.Context, job Job, progress *atomic.Int64) error {
	in, err := s.openContainer(job.InputBlobContainerURI)
	if err != nil {
		return err
	}
	out, err := s.openContainer(job.OutputBlobContainerURI)
	if err != nil {
		return err
	}
	body, size, err := in.get(ctx, job.InputBlobName)
	if err != nil {
		return err
	}
	defer body.Close()
	cr := &countingReader{r: body}
	br := bufio.NewReaderSize(cr, 64<<10)
	var errs bytes.Buffer
	enc := json.NewEncoder(&errs)
	for n := 1; ; n++ {
		line, rerr := readLine(br)
		if len(bytes.TrimSpace(line)) > 0 {
			if ie := s.importLine(ctx, line); ie != nil {
				ie.Line = n
				_ = enc.Encode(ie)
			}
		}
		if size > 0 {
			progress.Store(min(99, cr.n.Load()*100/size))
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return errcode.Wrap(errcode.InvalidStorageEndpointOrBlob, rerr, "could not read %s", job.InputBlobName)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return out.put(ctx, job.OutputBlobName, bytes.NewReader(errs.Bytes()), int64(errs.Len()))
}

// readLine reads one line; a line longer than maxLine is returned cut, the rest skipped.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) <= maxLine {
			line = append(line, frag...)
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return line, err
		}
	}
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// importLine applies one line; it returns the error to log, or nil.
func (s *Service) importLine(ctx context.Context, line []byte) *importError {
	if len(line) >= maxLine {
		return &importError{ErrorCode: errcode.ArgumentInvalid.Name(), ErrorStatus: "the line is longer than 1 MiB"}
	}
	var e registry.ImportDevice
	if err := json.Unmarshal(line, &e); err != nil {
		return &importError{ErrorCode: errcode.ArgumentInvalid.Name(), ErrorStatus: "the line is not a JSON device: " + err.Error()}
	}
	if e.ImportMode == "" {
		e.ImportMode = registry.ModeCreateOrUpdate
	}
	fail := func(err error) *importError {
		ce := errcode.As(err)
		return &importError{DeviceID: e.ID, ModuleID: e.ModuleID, ErrorCode: ce.Code.Name(), ErrorStatus: ce.Msg}
	}
	if err := registry.CheckBulk([]registry.ImportDevice{e}); err != nil {
		return fail(err)
	}
	res, err := s.cfg.Registry.Bulk(ctx, []registry.ImportDevice{e})
	if err != nil {
		return fail(err)
	}
	if len(res.Errors) > 0 {
		return fail(res.Errors[0].Err)
	}
	if s.cfg.Twins == nil || e.ModuleID != "" || registry.BulkOperation(e.ImportMode) == "delete" || (len(e.Tags) == 0 && len(e.Properties) == 0) {
		return nil
	}
	// The twin's tags and desired properties are merged into the twin (reported properties are
	// the device's and are not imported).
	patch, _ := json.Marshal(struct {
		Tags       json.RawMessage `json:"tags,omitempty"`
		Properties json.RawMessage `json:"properties,omitempty"`
	}{e.Tags, e.Properties})
	ifMatch := "*"
	if strings.HasSuffix(strings.ToLower(e.ImportMode), "ifmatchetag") && e.TwinETag != "" {
		ifMatch = e.TwinETag
	}
	if _, err := s.cfg.Twins.Update(ctx, e.ID, "", patch, ifMatch); err != nil {
		return fail(err)
	}
	return nil
}
