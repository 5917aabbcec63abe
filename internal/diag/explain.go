package diag

import (
	"context"
	"strings"

	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/kql"
)

// Explain gives what the catalog knows about an IoT Hub error code, wire or guide name, or a
// condition without a code (MessageExpired): code, name, summary, cause and resolution. It backs
// the kql explain() function.
func Explain(codeOrName string) (map[string]any, bool) {
	s := strings.TrimSpace(codeOrName)
	if s == "" {
		return nil, false
	}
	if e, ok := errcode.Find(s); ok {
		name := e.Name
		if e.GuideName != "" {
			name = e.GuideName
		}
		cause, fix := e.Cause, e.Resolution
		if cause == "" {
			cause = e.Summary
		}
		return map[string]any{
			"code": e.Code.String(), "name": name, "summary": e.Summary, "symptom": e.Symptom,
			"cause": cause, "resolution": fix, "httpStatus": e.Status(),
		}, true
	}
	if c, ok := errcode.FindCondition(s); ok {
		return map[string]any{
			"code": "", "name": c.Name, "summary": c.Symptom, "symptom": c.Symptom,
			"cause": c.Cause, "resolution": c.Resolution, "where": c.Where,
		}, true
	}
	// A Routes record may carry a bare HTTP status (401, 503) as its code.
	if len(s) == 3 {
		if e, ok := errcode.Find(s + "000"); ok {
			return Explain(e.Code.String())
		}
	}
	return nil, false
}

// AddExplanations appends Cause and Resolution columns to a result that has a ResultType (or
// ResultDescription) column, filled from the catalog for each row's code.
func AddExplanations(res *kql.Result) {
	rt, rd := res.ColumnIndex("ResultType"), res.ColumnIndex("ResultDescription")
	if rt < 0 && rd < 0 {
		return
	}
	res.Columns = append(res.Columns, kql.Column{Name: "Cause", Type: kql.String}, kql.Column{Name: "Resolution", Type: kql.String})
	for i, row := range res.Rows {
		var info map[string]any
		for _, c := range []int{rt, rd} {
			if c < 0 || info != nil {
				continue
			}
			if m, ok := Explain(row[c].String()); ok {
				info = m
			}
		}
		cause, fix := "", ""
		if info != nil {
			cause, _ = info["cause"].(string)
			fix, _ = info["resolution"].(string)
		}
		res.Rows[i] = append(row, kql.StringValue(cause), kql.StringValue(fix))
	}
}

// SummaryQuery is what `roost logs explain` runs: the errors found, by code, with how often,
// how many devices, where and when.
const SummaryQuery = `AzureDiagnostics
| where Level == "Error" or Level == "Critical"
| extend DeviceId = tostring(parse_json(properties_s).deviceId)
| summarize Count = count(), Devices = dcountif(DeviceId, isnotempty(DeviceId)), FirstSeen = min(TimeGenerated), LastSeen = max(TimeGenerated),
    Categories = make_set(Category), Operations = make_set(OperationName), SampleDevices = make_set(DeviceId, 5)
    by ResultType, ResultDescription
| order by Count desc, ResultType asc`

// ErrorSummary is one line of an error summary.
type ErrorSummary struct {
	Code          string   `json:"code"`
	Name          string   `json:"name"`
	Count         int64    `json:"count"`
	Devices       int64    `json:"devices"`
	SampleDevices []string `json:"sampleDevices"`
	FirstSeen     string   `json:"firstSeen"`
	LastSeen      string   `json:"lastSeen"`
	Categories    []string `json:"categories"`
	Operations    []string `json:"operations"`
	Summary       string   `json:"summary,omitempty"`
	Cause         string   `json:"cause,omitempty"`
	Resolution    string   `json:"resolution,omitempty"`
}

// Summarize runs [SummaryQuery] over the catalog and explains each code.
func Summarize(ctx context.Context, cat kql.Catalog, opts kql.Options) ([]ErrorSummary, error) {
	if opts.Explain == nil {
		opts.Explain = Explain
	}
	res, err := kql.Run(ctx, cat, SummaryQuery, opts)
	if err != nil {
		return nil, err
	}
	return SummariesFromResult(res), nil
}

// SummariesFromResult turns the rows of [SummaryQuery] into explained summaries.
func SummariesFromResult(res *kql.Result) []ErrorSummary {
	col := func(name string) int { return res.ColumnIndex(name) }
	strs := func(v kql.Value) []string {
		arr, _ := v.D.([]any)
		out := make([]string, 0, len(arr))
		for _, a := range arr {
			if s := kql.DynamicValue(a).String(); s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	var out []ErrorSummary
	for _, row := range res.Rows {
		s := ErrorSummary{
			Code:          row[col("ResultType")].String(),
			Name:          row[col("ResultDescription")].String(),
			Count:         row[col("Count")].I,
			Devices:       row[col("Devices")].I,
			SampleDevices: strs(row[col("SampleDevices")]),
			FirstSeen:     row[col("FirstSeen")].String(),
			LastSeen:      row[col("LastSeen")].String(),
			Categories:    strs(row[col("Categories")]),
			Operations:    strs(row[col("Operations")]),
		}
		info, ok := Explain(s.Code)
		if !ok {
			info, ok = Explain(s.Name)
		}
		if ok {
			s.Summary, _ = info["summary"].(string)
			s.Cause, _ = info["cause"].(string)
			s.Resolution, _ = info["resolution"].(string)
		}
		out = append(out, s)
	}
	return out
}
