package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/sas"
)

// AdminConfig says how to reach a hub's admin listener.
type AdminConfig struct {
	// Address is the admin listener's host:port (plain HTTP).
	Address string
	// ConnectionString, when set, signs requests with a SAS token of its policy.
	ConnectionString string
	// Token, when set, is sent as an admin bearer token instead.
	Token string
	// Timeout bounds each request (not streams). Zero means 2 minutes.
	Timeout time.Duration
}

// Admin calls a hub's admin endpoints: diagnostic queries, metrics, faults, alerts, events.
type Admin struct {
	cfg    AdminConfig
	cs     sas.ConnectionString
	http   *http.Client
	stream *http.Client
	base   string
}

// NewAdmin checks the configuration.
func NewAdmin(cfg AdminConfig) (*Admin, error) {
	if cfg.Address == "" {
		return nil, errors.New("no admin address: start the hub with --admin-addr, or pass --admin-addr")
	}
	a := &Admin{cfg: cfg, base: "http://" + cfg.Address}
	if cfg.Token == "" {
		cs, err := sas.ParseConnectionString(cfg.ConnectionString)
		if err != nil {
			return nil, err
		}
		if cs.SharedAccessKeyName == "" {
			return nil, errors.New("the admin API needs a service connection string (with SharedAccessKeyName) or an admin token")
		}
		a.cs = cs
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Minute
	}
	a.http = &http.Client{Timeout: cfg.Timeout}
	a.stream = &http.Client{}
	return a, nil
}

func (a *Admin) authorize(req *http.Request) error {
	if a.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+a.cfg.Token)
		return nil
	}
	tok, err := sas.Sign(a.cs.HostName, a.cs.SharedAccessKey, a.cs.SharedAccessKeyName, time.Now().Add(time.Hour))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", tok)
	return nil
}

// AdminError is an error answer of the admin API.
type AdminError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
	Inner   struct {
		Code string `json:"code"`
		Line int    `json:"line"`
		Pos  int    `json:"pos"`
	} `json:"innererror"`
}

func (e *AdminError) Error() string { return e.Message }

// Do sends one request; body (when not nil) is sent as JSON and out receives the answer.
func (a *Admin) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := a.authorize(req); err != nil {
		return err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("admin API at %s: %w", a.cfg.Address, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return parseAdminError(resp.StatusCode, data)
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

func parseAdminError(status int, data []byte) error {
	var eb struct {
		Error AdminError `json:"error"`
	}
	if json.Unmarshal(data, &eb) != nil || eb.Error.Message == "" {
		return &AdminError{Status: status, Message: fmt.Sprintf("admin API answered %d: %s", status, strings.TrimSpace(string(data)))}
	}
	eb.Error.Status = status
	return &eb.Error
}

// QueryResult is the answer of a query: the Log Analytics tables, plus warnings.
type QueryResult struct {
	Tables []struct {
		Name    string `json:"name"`
		Columns []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"columns"`
		Rows [][]any `json:"rows"`
	} `json:"tables"`
	Warnings   []string       `json:"warnings"`
	Statistics map[string]any `json:"statistics"`
}

// Query runs KQL on the hub. timespan is an ISO 8601 duration or interval ("" for none).
func (a *Admin) Query(ctx context.Context, query, timespan string, explain bool, maxRows int) (*QueryResult, error) {
	body := map[string]any{"query": query}
	if timespan != "" {
		body["timespan"] = timespan
	}
	if explain {
		body["explain"] = true
	}
	if maxRows > 0 {
		body["maxRows"] = maxRows
	}
	var out QueryResult
	if err := a.Do(ctx, http.MethodPost, "/diagnostics/query", body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Tail follows new diagnostic records until ctx ends or fn returns an error (ErrStop ends it
// without error).
func (a *Admin) Tail(ctx context.Context, cats, levels []string, fn func(diag.Wire) error) error {
	v := url.Values{}
	for _, c := range cats {
		v.Add("category", c)
	}
	for _, l := range levels {
		v.Add("level", l)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/diagnostics/tail?"+v.Encode(), nil)
	if err != nil {
		return err
	}
	if err := a.authorize(req); err != nil {
		return err
	}
	resp, err := a.stream.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return parseAdminError(resp.StatusCode, data)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var w diag.Wire
		if json.Unmarshal(sc.Bytes(), &w) != nil {
			continue
		}
		if err := fn(w); err != nil {
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF
}
