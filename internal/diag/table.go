package diag

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/kql"
)

// TableName is the Log Analytics table diagnostic records are queried as.
const TableName = "AzureDiagnostics"

// Columns of the AzureDiagnostics table, in order (spec/diagnostics.md §1.2).
const (
	colTimeGenerated = iota
	colResourceID
	colCategory
	colResourceGroup
	colSubscriptionID
	colResourceProvider
	colResource
	colResourceType
	colOperationName
	colResultType
	colCorrelationID
	colResultDescription
	colLevel
	colLocation
	colCallerIP
	colDurationMs
	colProperties
	colSourceSystem
	colType
	colResourceIDLower
	colTenantID
	numColumns
)

var tableColumns = []kql.Column{
	{Name: "TimeGenerated", Type: kql.DateTime},
	{Name: "ResourceId", Type: kql.String},
	{Name: "Category", Type: kql.String},
	{Name: "ResourceGroup", Type: kql.String},
	{Name: "SubscriptionId", Type: kql.String},
	{Name: "ResourceProvider", Type: kql.String},
	{Name: "Resource", Type: kql.String},
	{Name: "ResourceType", Type: kql.String},
	{Name: "OperationName", Type: kql.String},
	{Name: "ResultType", Type: kql.String},
	{Name: "CorrelationId", Type: kql.String},
	{Name: "ResultDescription", Type: kql.String},
	{Name: "Level", Type: kql.String},
	{Name: "Location", Type: kql.String},
	{Name: "CallerIpAddress", Type: kql.String},
	{Name: "DurationMs", Type: kql.Long},
	{Name: "properties_s", Type: kql.String},
	{Name: "SourceSystem", Type: kql.String},
	{Name: "Type", Type: kql.String},
	{Name: "_ResourceId", Type: kql.String},
	{Name: "TenantId", Type: kql.String},
}

// Columns returns the AzureDiagnostics table's columns.
func Columns() []kql.Column { return slices.Clone(tableColumns) }

// resourceParts splits an ARM id into the columns Log Analytics derives from it.
type resourceParts struct {
	id, lower, sub, group, provider, typ, name string
}

func parseResourceID(id string) resourceParts {
	p := resourceParts{id: id, lower: strings.ToLower(id)}
	segs := strings.Split(strings.Trim(id, "/"), "/")
	for i := 0; i+1 < len(segs); i += 2 {
		switch strings.ToUpper(segs[i]) {
		case "SUBSCRIPTIONS":
			p.sub = strings.ToLower(segs[i+1])
		case "RESOURCEGROUPS":
			p.group = segs[i+1]
		case "PROVIDERS":
			p.provider = strings.ToUpper(segs[i+1])
			if i+3 < len(segs) {
				p.typ = strings.ToUpper(segs[i+2])
				p.name = segs[i+3]
			}
			i += 2
		}
	}
	return p
}

// rowMaker fills AzureDiagnostics rows from records, caching the parsed resource id.
type rowMaker struct {
	last  string
	parts resourceParts
}

// fill sets row (numColumns long) from a record.
func (m *rowMaker) fill(row kql.Row, w *Wire) {
	if w.ResourceID != m.last {
		m.last, m.parts = w.ResourceID, parseResourceID(w.ResourceID)
	}
	p := &m.parts
	row[colTimeGenerated] = kql.Value{}
	if t, err := time.Parse(time.RFC3339Nano, w.Time); err == nil {
		row[colTimeGenerated] = kql.TimeValue(t)
	}
	row[colResourceID] = kql.StringValue(p.id)
	row[colCategory] = kql.StringValue(w.Category)
	row[colResourceGroup] = kql.StringValue(p.group)
	row[colSubscriptionID] = kql.StringValue(p.sub)
	row[colResourceProvider] = kql.StringValue(p.provider)
	row[colResource] = kql.StringValue(p.name)
	row[colResourceType] = kql.StringValue(p.typ)
	row[colOperationName] = kql.StringValue(w.OperationName)
	row[colResultType] = kql.StringValue(w.ResultType)
	row[colCorrelationID] = kql.StringValue(w.CorrelationID)
	row[colResultDescription] = kql.StringValue(w.ResultDescription)
	row[colLevel] = kql.StringValue(w.Level)
	row[colLocation] = kql.StringValue(w.Location)
	row[colCallerIP] = kql.StringValue(w.CallerIPAddress)
	row[colDurationMs] = kql.Value{}
	if n, err := strconv.ParseInt(strings.TrimSpace(w.DurationMs), 10, 64); err == nil {
		row[colDurationMs] = kql.LongValue(n)
	}
	row[colProperties] = kql.StringValue(w.Properties)
	row[colSourceSystem] = kql.StringValue("Azure")
	row[colType] = kql.StringValue(TableName)
	row[colResourceIDLower] = kql.StringValue(p.lower)
	row[colTenantID] = kql.StringValue("")
}

// constantColumns are the columns whose value does not depend on the record in Roost's own
// logs; a scan asked for another value of one returns nothing.
var constantColumns = map[string]string{
	"Type":             TableName,
	"ResourceProvider": "MICROSOFT.DEVICES",
	"ResourceType":     "IOTHUBS",
	"SourceSystem":     "Azure",
}

// Table is the AzureDiagnostics table over the records stored in the engine.
type Table struct {
	eng *engine.Engine
	// Slack widens the stored-time window of a scan on both sides: a record's time is taken
	// when it is written, its stored time when the engine has it. Zero means 5 minutes.
	Slack time.Duration
}

var _ kql.Table = (*Table)(nil)

// NewTable returns the AzureDiagnostics table of the hub's records.
func NewTable(eng *engine.Engine) *Table { return &Table{eng: eng} }

// Name implements [kql.Table].
func (t *Table) Name() string { return TableName }

// Columns implements [kql.Table].
func (t *Table) Columns() []kql.Column { return tableColumns }

// Filters returns the engine subjects holding records of the given categories and levels
// (empty means any).
func Filters(cats, levels []string) []string {
	switch {
	case len(cats) == 0 && len(levels) == 0:
		return []string{SubjectPrefix + ">"}
	case len(levels) == 0:
		out := make([]string, len(cats))
		for i, c := range cats {
			out[i] = SubjectPrefix + token(c) + ".*"
		}
		return out
	case len(cats) == 0:
		out := make([]string, len(levels))
		for i, l := range levels {
			out[i] = SubjectPrefix + "*." + token(l)
		}
		return out
	}
	var out []string
	for _, c := range cats {
		for _, l := range levels {
			out = append(out, Subject(c, l))
		}
	}
	return out
}

// Scan implements [kql.Table]: it reads only the subjects of the categories and levels the
// query allows, from the first record stored at the start of its time range (the engine's time
// index) to the end of it.
func (t *Table) Scan(ctx context.Context, req kql.ScanRequest, fn func(kql.Row) bool) error {
	for col, want := range constantColumns {
		if vals, ok := req.Equals[col]; ok && !slices.Contains(vals, want) {
			return nil
		}
	}
	st, err := t.eng.OpenStream(ctx, StreamName)
	if err != nil {
		return err
	}
	slack := t.Slack
	if slack <= 0 {
		slack = 5 * time.Minute
	}
	cfg := engine.ScanConfig{Filters: Filters(req.Equals["Category"], req.Equals["Level"])}
	if !req.From.IsZero() {
		cfg.Since = req.From.Add(-slack)
	}
	if !req.To.IsZero() {
		cfg.Until = req.To.Add(slack)
	}
	row := make(kql.Row, numColumns)
	var mk rowMaker
	var w Wire
	return st.Scan(ctx, cfg, func(m engine.Msg) bool {
		w = Wire{}
		if decodeWire(m.Data, &w) != nil {
			return true
		}
		mk.fill(row, &w)
		return fn(row)
	})
}

// Query runs a KQL query over the hub's diagnostic records (AzureDiagnostics) and any other
// tables given.
func Query(ctx context.Context, eng *engine.Engine, query string, opts kql.Options, more ...kql.Table) (*kql.Result, error) {
	if opts.Explain == nil {
		opts.Explain = Explain
	}
	cat := append(kql.Catalog{NewTable(eng)}, more...)
	return kql.Run(ctx, cat, query, opts)
}
