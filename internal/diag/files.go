package diag

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/kql"
)

// FileTable is the AzureDiagnostics table over diagnostic logs exported from an IoT hub (or from
// Roost): files, or directory trees of them, as diagnostic settings write them to a storage
// account (insights-logs-<category>/resourceId=.../PT1H.json). Each file may hold
// {"records":[...]} batches, JSON lines (one record per line), or a JSON array of records; the
// shape is read from the content. Records may use Azure's field names (time, category,
// properties as a string or an object) or Log Analytics' columns (TimeGenerated, properties_s).
//
// Files are read again on every scan, one record at a time, so exports larger than memory work.
type FileTable struct {
	paths []string
}

var _ kql.Table = (*FileTable)(nil)

// fileExts are the files a directory walk reads; a path named explicitly is read whatever its
// name.
var fileExts = []string{".json", ".jsonl", ".ndjson", ".log", ".txt"}

// OpenFiles checks the paths and lists the files they hold (directories are walked).
func OpenFiles(paths ...string) (*FileTable, error) {
	t := &FileTable{}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			t.paths = append(t.paths, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || strings.HasPrefix(d.Name(), ".") {
				return nil
			}
			if slices.Contains(fileExts, strings.ToLower(filepath.Ext(path))) {
				t.paths = append(t.paths, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if len(t.paths) == 0 {
		return nil, fmt.Errorf("no log files (%s) under %s", strings.Join(fileExts, ", "), strings.Join(paths, ", "))
	}
	slices.Sort(t.paths)
	return t, nil
}

// Files returns the files the table reads.
func (t *FileTable) Files() []string { return slices.Clone(t.paths) }

// Name implements [kql.Table].
func (t *FileTable) Name() string { return TableName }

// Columns implements [kql.Table].
func (t *FileTable) Columns() []kql.Column { return tableColumns }

// Scan implements [kql.Table].
func (t *FileTable) Scan(ctx context.Context, _ kql.ScanRequest, fn func(kql.Row) bool) error {
	row := make(kql.Row, numColumns)
	var mk rowMaker
	for _, p := range t.paths {
		stop := false
		err := readFile(ctx, p, func(w *Wire) bool {
			mk.fill(row, w)
			if !fn(row) {
				stop = true
				return false
			}
			return true
		})
		if err != nil {
			return err
		}
		if stop {
			return nil
		}
	}
	return nil
}

func readFile(ctx context.Context, path string, fn func(*Wire) bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := ReadRecords(ctx, f, fn); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// ReadRecords decodes exported records from r, in any of the shapes [FileTable] accepts, and
// calls fn with each until it returns false. Errors say where in the input they are.
func ReadRecords(ctx context.Context, r io.Reader, fn func(*Wire) bool) error {
	cr := &countingReader{r: bufio.NewReaderSize(r, 64<<10)}
	dec := json.NewDecoder(cr)
	dec.UseNumber()
	n := 0
	var w Wire
	emit := func(rec map[string]json.RawMessage) (bool, error) {
		n++
		if n%1024 == 0 && ctx.Err() != nil {
			return false, ctx.Err()
		}
		if err := recordToWire(rec, &w); err != nil {
			return false, err
		}
		return fn(&w), nil
	}
	where := func(err error) error {
		return fmt.Errorf("line %d: %w", cr.lineAt(dec.InputOffset()), err)
	}
	readArray := func() (bool, error) {
		for dec.More() {
			rec, err := decodeRecord(dec)
			if err != nil {
				return false, where(err)
			}
			ok, err := emit(rec)
			if err != nil {
				return false, where(err)
			}
			if !ok {
				return false, nil
			}
		}
		if _, err := dec.Token(); err != nil {
			return false, where(err)
		}
		return true, nil
	}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return where(badJSON(err))
		}
		switch tok {
		case json.Delim('['):
			ok, err := readArray()
			if err != nil || !ok {
				return err
			}
		case json.Delim('{'):
			rec := map[string]json.RawMessage{}
			sawRecords := false
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return where(badJSON(err))
				}
				k, _ := kt.(string)
				if strings.EqualFold(k, "records") {
					sawRecords = true
					t, err := dec.Token()
					if err != nil {
						return where(badJSON(err))
					}
					if t != json.Delim('[') {
						return where(errors.New(`"records" must be an array of records`))
					}
					ok, err := readArray()
					if err != nil || !ok {
						return err
					}
					continue
				}
				var raw json.RawMessage
				if err := dec.Decode(&raw); err != nil {
					return where(badJSON(err))
				}
				rec[strings.ToLower(k)] = raw
			}
			if _, err := dec.Token(); err != nil {
				return where(badJSON(err))
			}
			if !sawRecords {
				ok, err := emit(rec)
				if err != nil {
					return where(err)
				}
				if !ok {
					return nil
				}
			}
		default:
			return where(errors.New("expected a record object, a {\"records\":[...]} batch or an array of records"))
		}
	}
}

func badJSON(err error) error { return fmt.Errorf("not valid JSON: %w", err) }

func decodeRecord(dec *json.Decoder) (map[string]json.RawMessage, error) {
	var raw map[string]json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, badJSON(err)
	}
	rec := make(map[string]json.RawMessage, len(raw))
	for k, v := range raw {
		rec[strings.ToLower(k)] = v
	}
	return rec, nil
}

// recordToWire maps an exported record's fields (any case; Azure or Log Analytics names) onto
// the wire shape.
func recordToWire(rec map[string]json.RawMessage, w *Wire) error {
	*w = Wire{}
	str := func(keys ...string) string {
		for _, k := range keys {
			raw, ok := rec[k]
			if !ok {
				continue
			}
			return rawText(raw)
		}
		return ""
	}
	w.Time = str("time", "timegenerated")
	if w.Time == "" {
		return errors.New("a record has no time")
	}
	w.ResourceID = str("resourceid", "_resourceid")
	w.OperationName = str("operationname")
	w.Category = str("category")
	w.Level = str("level")
	w.ResultType = str("resulttype")
	w.ResultDescription = str("resultdescription")
	w.DurationMs = str("durationms")
	w.CallerIPAddress = str("calleripaddress")
	w.CorrelationID = str("correlationid")
	w.Location = str("location")
	w.Properties = str("properties", "properties_s")
	if t, ok := normalizeTime(w.Time); ok {
		w.Time = t
	}
	return nil
}

// rawText turns a JSON value into text: strings unquoted, null empty, anything else (numbers,
// objects such as a properties bag written as an object) as compact JSON.
func rawText(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return ""
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) == nil {
		return buf.String()
	}
	return string(raw)
}

// normalizeTime rewrites the time forms exports use as RFC 3339 in UTC.
func normalizeTime(s string) (string, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00",
		"2006-01-02 15:04:05.999999999", "01/02/2006 15:04:05", "1/2/2006 3:04:05 PM"} {
		if t, err := time.Parse(layout, strings.TrimSpace(s)); err == nil {
			return t.UTC().Format(time.RFC3339Nano), true
		}
	}
	return s, false
}

// countingReader counts lines so errors can name the line of a byte offset.
type countingReader struct {
	r     io.Reader
	off   int64
	lines []int64 // offsets of line starts after the first (the recent ones)
	base  int     // line starts forgotten
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	for i := 0; i < n; i++ {
		if p[i] == '\n' {
			c.lines = append(c.lines, c.off+int64(i)+1)
		}
	}
	c.off += int64(n)
	// The decoder never looks back further than its buffer; forget line starts far behind.
	if len(c.lines) > 1<<16 && c.lines[0] < c.off-(64<<20) {
		i, _ := slices.BinarySearch(c.lines, c.off-(64<<20))
		c.base += i
		c.lines = append(c.lines[:0], c.lines[i:]...)
	}
	return n, err
}

func (c *countingReader) lineAt(off int64) int {
	i, _ := slices.BinarySearch(c.lines, off+1)
	return c.base + i + 1
}
