package kql

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Options bound and shape a query run. The zero value is usable.
type Options struct {
	// Now is the query's now() and the end of ago(); zero means time.Now().
	Now time.Time
	// From and To restrict every table's TimeGenerated to [From, To] (the Log Analytics API's
	// timespan). Zero means unbounded on that side.
	From, To time.Time
	// Timeout bounds the run. Zero means 60 s.
	Timeout time.Duration
	// MaxMemory bounds the bytes that operators holding rows (summarize, sort, top, distinct)
	// may keep. Zero means 256 MiB.
	MaxMemory int64
	// MaxRows bounds the result's rows; more are cut and Result.Truncated is set. Zero means
	// 30,000 (the Log Analytics portal's limit).
	MaxRows int
	// Explain, when set, backs the explain() function.
	Explain Explainer
}

// Errors a run returns besides [*Error].
var (
	// ErrTimeout means the query ran longer than Options.Timeout.
	ErrTimeout = errors.New("the query ran out of time")
	// ErrMemory means an operator needed more memory than Options.MaxMemory.
	ErrMemory = errors.New("the query needs more memory than allowed")
)

// Run parses and runs a query against the catalog.
func Run(ctx context.Context, cat Catalog, query string, opts Options) (*Result, error) {
	q, err := Parse(query)
	if err != nil {
		return nil, err
	}
	return Exec(ctx, cat, q, opts)
}

// run is one execution.
type run struct {
	ctx      context.Context
	cat      Catalog
	opts     Options
	now      time.Time
	lets     map[string]Value
	explain  Explainer
	warnings []string
	mem      int64
	scanned  int64
	err      error
}

func (r *run) warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	for _, w := range r.warnings {
		if w == msg {
			return
		}
	}
	r.warnings = append(r.warnings, msg)
}

// grow accounts bytes held by an operator, failing the run past the limit.
func (r *run) grow(n int64) {
	r.mem += n
	if r.mem > r.opts.MaxMemory && r.err == nil {
		r.err = fmt.Errorf("%w (%d MiB): narrow the time range, filter earlier, or summarize by fewer keys", ErrMemory, r.opts.MaxMemory>>20)
	}
}

// fail records the first error of the run.
func (r *run) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// Exec runs a parsed query.
func Exec(ctx context.Context, cat Catalog, q *Query, opts Options) (*Result, error) {
	start := time.Now()
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.MaxMemory <= 0 {
		opts.MaxMemory = 256 << 20
	}
	if opts.MaxRows <= 0 {
		opts.MaxRows = 30000
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	r := &run{ctx: ctx, cat: cat, opts: opts, now: opts.Now.UTC(), lets: map[string]Value{}, explain: opts.Explain}
	for _, l := range q.Lets {
		sc := &scope{r: r}
		c, err := sc.compile(l.Value)
		if err != nil {
			return nil, err
		}
		if !c.konst {
			return nil, errorf(l.Pos, "let %s must be a constant expression", l.Name)
		}
		r.lets[l.Name] = c.fn(nil)
	}
	res := &Result{}
	sink := &collect{r: r, res: res}
	src, cols, err := r.plan(q.Body, sink, &res.Columns)
	if err != nil {
		return nil, err
	}
	_ = cols
	err = src()
	if err == nil {
		err = r.err
	}
	if err == nil {
		err = sink.finish()
	}
	if err == nil {
		err = r.err
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return nil, fmt.Errorf("%w (%s): narrow the time range or filter earlier", ErrTimeout, opts.Timeout)
		}
		return nil, err
	}
	inferTypes(res)
	res.Warnings = r.warnings
	res.Stats = Stats{RowsScanned: r.scanned, Duration: time.Since(start)}
	return res, nil
}

// inferTypes fills column types known only at run time from the first non-null value.
func inferTypes(res *Result) {
	for i := range res.Columns {
		if res.Columns[i].Type != Null {
			continue
		}
		for _, row := range res.Rows {
			if !row[i].IsNull() || row[i].K == Dynamic {
				res.Columns[i].Type = row[i].K
				break
			}
		}
		if res.Columns[i].Type == Null {
			res.Columns[i].Type = String
		}
	}
}

// stage is one operator of a running pipeline: push receives a row it may keep; it returns
// false to stop its producer. finish flushes what the stage holds.
type stage interface {
	push(Row) bool
	finish() error
}

// collect is the final stage: it keeps up to MaxRows rows.
type collect struct {
	r   *run
	res *Result
}

func (c *collect) push(row Row) bool {
	if len(c.res.Rows) >= c.r.opts.MaxRows {
		c.res.Truncated = true
		return false
	}
	c.res.Rows = append(c.res.Rows, row)
	return true
}

func (c *collect) finish() error { return nil }

// plan builds the stages of a pipeline ending in next and returns the function that runs its
// source. outCols receives the pipeline's output columns.
func (r *run) plan(pl *Pipeline, next stage, outCols *[]Column) (func() error, []Column, error) {
	// Leading where (and search) operators are fused into the source: they are evaluated on the
	// source's row before it is copied, and their conjuncts narrow the scan.
	ops := pl.Ops
	var lead []Op
	for len(ops) > 0 {
		switch ops[0].(type) {
		case *WhereOp, *SearchOp:
			lead = append(lead, ops[0])
			ops = ops[1:]
			continue
		}
		break
	}
	srcCols, err := r.sourceColumns(pl.Source)
	if err != nil {
		return nil, nil, err
	}
	// Build the stage chain back to front, so each stage knows its successor.
	schemas := make([][]Column, len(ops)+1)
	schemas[0] = srcCols
	type builder func(next stage) stage
	builders := make([]builder, len(ops))
	for i, op := range ops {
		b, cols, err := r.planOp(op, schemas[i])
		if err != nil {
			return nil, nil, err
		}
		builders[i] = b
		schemas[i+1] = cols
	}
	*outCols = schemas[len(ops)]
	st := next
	for i := len(builders) - 1; i >= 0; i-- {
		st = builders[i](st)
	}
	first := st
	src, err := r.planSource(pl.Source, srcCols, lead, first)
	if err != nil {
		return nil, nil, err
	}
	return func() error {
		if err := src(); err != nil {
			return err
		}
		if r.err != nil {
			return r.err
		}
		return first.finish()
	}, schemas[len(ops)], nil
}

// sourceColumns returns the columns a source produces.
func (r *run) sourceColumns(s Source) ([]Column, error) {
	switch s := s.(type) {
	case *TableRef:
		t := r.cat.lookup(s.Name)
		if t == nil {
			return nil, r.unknownTable(s)
		}
		return t.Columns(), nil
	case *SearchSource:
		tables, err := r.searchTables(s)
		if err != nil {
			return nil, err
		}
		cols, _ := unionColumns(tables)
		return cols, nil
	case *PrintSource:
		sc := &scope{r: r}
		cols := make([]Column, len(s.Items))
		for i, it := range s.Items {
			c, err := sc.compile(it.Expr)
			if err != nil {
				return nil, err
			}
			name := it.Name
			if name == "" {
				name = "print_" + strconv.Itoa(i)
			}
			cols[i] = Column{Name: name, Type: c.typ}
		}
		return cols, nil
	case *SubPipeline:
		var cols []Column
		// Plan once to learn the columns; the real run plans again with the right next stage.
		if _, _, err := r.plan(s.Body, &collect{r: r, res: &Result{}}, &cols); err != nil {
			return nil, err
		}
		return cols, nil
	}
	return nil, errorf(s.sourcePos(), "unsupported source")
}

func (r *run) unknownTable(s *TableRef) error {
	names := make([]string, len(r.cat))
	for i, t := range r.cat {
		names[i] = t.Name()
		if strings.EqualFold(t.Name(), s.Name) {
			return errorf(s.Pos, "unknown table '%s' (did you mean '%s'? table names are case-sensitive)", s.Name, t.Name())
		}
	}
	return errorf(s.Pos, "unknown table or operator '%s' (tables: %s)", s.Name, strings.Join(names, ", "))
}

func (r *run) searchTables(s *SearchSource) ([]Table, error) {
	if len(s.Tables) == 0 {
		return r.cat, nil
	}
	var out []Table
	for i := range s.Tables {
		t := r.cat.lookup(s.Tables[i].Name)
		if t == nil {
			return nil, r.unknownTable(&s.Tables[i])
		}
		out = append(out, t)
	}
	return out, nil
}

// unionColumns merges tables' columns for search and union: $table first, then each name once.
// The returned maps give, per table, the union index of each of its columns.
func unionColumns(tables []Table) ([]Column, [][]int) {
	cols := []Column{{Name: "$table", Type: String}}
	idx := map[string]int{"$table": 0}
	maps := make([][]int, len(tables))
	for ti, t := range tables {
		tc := t.Columns()
		maps[ti] = make([]int, len(tc))
		for i, c := range tc {
			j, ok := idx[c.Name]
			if !ok {
				j = len(cols)
				idx[c.Name] = j
				cols = append(cols, c)
			} else if cols[j].Type != c.Type {
				cols[j].Type = Null
			}
			maps[ti][i] = j
		}
	}
	return cols, maps
}

// planSource returns the function that produces the source's rows into next, applying the
// fused leading predicates.
func (r *run) planSource(s Source, cols []Column, lead []Op, next stage) (func() error, error) {
	// Compile the fused predicates against the source's columns.
	var preds []evalFn
	var conj []Expr
	sc := &scope{cols: cols, r: r}
	addPred := func(e Expr, search, cs bool) error {
		if e == nil {
			return nil
		}
		psc := *sc
		psc.search, psc.caseSensitive = search, cs
		c, err := psc.compile(e)
		if err != nil {
			return err
		}
		preds = append(preds, c.fn)
		if !search {
			conj = append(conj, conjuncts(e)...)
		}
		return nil
	}
	if ss, ok := s.(*SearchSource); ok && !ss.Union {
		if err := addPred(ss.Pred, true, ss.CaseSensitive); err != nil {
			return nil, err
		}
	}
	for _, op := range lead {
		switch op := op.(type) {
		case *WhereOp:
			if err := addPred(op.Pred, false, false); err != nil {
				return nil, err
			}
		case *SearchOp:
			if err := addPred(op.Pred, true, op.CaseSensitive); err != nil {
				return nil, err
			}
		}
	}
	pass := func(row Row) bool {
		for _, p := range preds {
			if !p(row).Truth() {
				return false
			}
		}
		return true
	}
	// Rows are counted and the context checked as they come.
	n := 0
	emit := func(row Row) bool {
		n++
		r.scanned++
		if n&1023 == 0 && r.ctx.Err() != nil {
			r.fail(r.ctx.Err())
			return false
		}
		if !pass(row) {
			return true
		}
		if !next.push(append(Row(nil), row...)) {
			return false
		}
		return r.err == nil
	}
	switch s := s.(type) {
	case *TableRef:
		t := r.cat.lookup(s.Name)
		req, skip := r.scanRequest(t.Columns(), conj)
		if skip {
			return func() error { return nil }, nil
		}
		tcol := timeColumn(t.Columns())
		return func() error {
			return t.Scan(r.ctx, req, func(row Row) bool {
				if tcol >= 0 && !inRange(row[tcol], r.opts.From, r.opts.To) {
					return true
				}
				return emit(row)
			})
		}, nil
	case *SearchSource:
		tables, err := r.searchTables(s)
		if err != nil {
			return nil, err
		}
		ucols, maps := unionColumns(tables)
		return func() error {
			scratch := make(Row, len(ucols))
			for ti, t := range tables {
				req, skip := r.scanRequest(t.Columns(), conj)
				if skip {
					continue
				}
				name := StringValue(t.Name())
				m := maps[ti]
				tcol := timeColumn(t.Columns())
				stopped := false
				err := t.Scan(r.ctx, req, func(row Row) bool {
					if tcol >= 0 && !inRange(row[tcol], r.opts.From, r.opts.To) {
						return true
					}
					clear(scratch)
					scratch[0] = name
					for i, v := range row {
						scratch[m[i]] = v
					}
					if !emit(scratch) {
						stopped = true
						return false
					}
					return true
				})
				if err != nil {
					return err
				}
				if stopped || r.err != nil {
					return nil
				}
			}
			return nil
		}, nil
	case *PrintSource:
		return func() error {
			row := make(Row, len(s.Items))
			for i, it := range s.Items {
				c, err := sc.compile(it.Expr)
				if err != nil {
					return err
				}
				row[i] = c.fn(nil)
			}
			emit(row)
			return nil
		}, nil
	case *SubPipeline:
		// The sub-pipeline's rows flow through the fused predicates into next.
		filter := &funcStage{pushFn: func(row Row) bool {
			r.scanned--
			return emit(row)
		}}
		var inner []Column
		run, _, err := r.plan(s.Body, filter, &inner)
		if err != nil {
			return nil, err
		}
		return run, nil
	}
	return nil, errorf(s.sourcePos(), "unsupported source")
}

// funcStage adapts a function to a stage with nothing to flush.
type funcStage struct{ pushFn func(Row) bool }

func (f *funcStage) push(r Row) bool { return f.pushFn(r) }
func (f *funcStage) finish() error   { return nil }

func timeColumn(cols []Column) int {
	for i, c := range cols {
		if c.Name == "TimeGenerated" && c.Type == DateTime {
			return i
		}
	}
	return -1
}

// conjuncts splits a predicate on its top-level and operators.
func conjuncts(e Expr) []Expr {
	e = unparen(e)
	if b, ok := e.(*Binary); ok && b.Op == "and" {
		return append(conjuncts(b.X), conjuncts(b.Y)...)
	}
	return []Expr{e}
}

// scanRequest derives what a table must return from the conjuncts of the fused predicates:
// time bounds on TimeGenerated and allowed values of string columns. skip is true when no row
// of the table can match (an equality on a column the table does not have).
func (r *run) scanRequest(cols []Column, conj []Expr) (ScanRequest, bool) {
	req := ScanRequest{From: r.opts.From, To: r.opts.To}
	has := map[string]Kind{}
	for _, c := range cols {
		has[c.Name] = c.Type
	}
	constVal := func(e Expr) (Value, bool) {
		sc := &scope{r: r}
		saved := len(r.warnings)
		c, err := sc.compile(e)
		r.warnings = r.warnings[:saved]
		if err != nil || !c.konst {
			return Value{}, false
		}
		return c.fn(nil), true
	}
	colName := func(e Expr) (string, bool) {
		id, ok := unparen(e).(*Ident)
		if !ok {
			return "", false
		}
		if _, isLet := r.lets[id.Name]; isLet {
			if _, isCol := has[id.Name]; !isCol {
				return "", false
			}
		}
		return id.Name, true
	}
	restrict := func(col string, vals []string) {
		if prev, ok := req.Equals[col]; ok {
			var both []string
			for _, v := range vals {
				for _, p := range prev {
					if v == p {
						both = append(both, v)
					}
				}
			}
			vals = both
		}
		if req.Equals == nil {
			req.Equals = map[string][]string{}
		}
		req.Equals[col] = vals
	}
	bound := func(op string, v Value) {
		if v.K != DateTime {
			return
		}
		t := v.Time()
		switch op {
		case ">", ">=":
			if req.From.IsZero() || t.After(req.From) {
				req.From = t
			}
		case "<", "<=":
			if req.To.IsZero() || t.Before(req.To) {
				req.To = t
			}
		}
	}
	flip := map[string]string{">": "<", ">=": "<=", "<": ">", "<=": ">="}
	// orEqualities reads a or b or ... where each term is Col == "lit" on one column.
	var orEqualities func(e Expr) (string, []string, bool)
	orEqualities = func(e Expr) (string, []string, bool) {
		b, ok := unparen(e).(*Binary)
		if !ok {
			return "", nil, false
		}
		switch b.Op {
		case "or":
			c1, v1, ok1 := orEqualities(b.X)
			c2, v2, ok2 := orEqualities(b.Y)
			if !ok1 || !ok2 || c1 != c2 {
				return "", nil, false
			}
			return c1, append(v1, v2...), true
		case "==":
			col, ok := colName(b.X)
			val, vok := constVal(b.Y)
			if !ok || !vok || val.K != String {
				return "", nil, false
			}
			return col, []string{val.S}, true
		}
		return "", nil, false
	}
	for _, e := range conj {
		if b, ok := e.(*Binary); ok && b.Op == "or" {
			if col, vals, ok := orEqualities(b); ok {
				if k, exists := has[col]; exists && k == String {
					restrict(col, vals)
				}
			}
			continue
		}
		switch e := e.(type) {
		case *Binary:
			switch e.Op {
			case "==":
				col, ok := colName(e.X)
				val, vok := constVal(e.Y)
				if !ok || !vok {
					col, ok = colName(e.Y)
					val, vok = constVal(e.X)
				}
				if !ok || !vok || val.K != String {
					continue
				}
				if _, exists := has[col]; !exists {
					return req, true // null == "x" never holds
				}
				if has[col] == String {
					restrict(col, []string{val.S})
				}
			case ">", ">=", "<", "<=":
				if col, ok := colName(e.X); ok && col == "TimeGenerated" {
					if v, ok := constVal(e.Y); ok {
						bound(e.Op, v)
					}
				} else if col, ok := colName(e.Y); ok && col == "TimeGenerated" {
					if v, ok := constVal(e.X); ok {
						bound(flip[e.Op], v)
					}
				}
			}
		case *InExpr:
			col, ok := colName(e.X)
			if !ok || e.Not || e.CaseFold {
				continue
			}
			var vals []string
			allStr := true
			for _, it := range e.List {
				v, ok := constVal(it)
				if !ok || v.K != String {
					allStr = false
					break
				}
				vals = append(vals, v.S)
			}
			if !allStr {
				continue
			}
			if _, exists := has[col]; !exists {
				return req, true
			}
			if has[col] == String {
				restrict(col, vals)
			}
		case *BetweenExpr:
			if col, ok := colName(e.X); ok && col == "TimeGenerated" && !e.Not {
				lo, ok1 := constVal(e.Lo)
				hi, ok2 := constVal(e.Hi)
				if ok1 && ok2 {
					if lo.K == DateTime && hi.K == TimeSpan {
						hi = Value{K: DateTime, I: lo.I + hi.I}
					}
					bound(">=", lo)
					bound("<=", hi)
				}
			}
		}
	}
	if !req.From.IsZero() && !req.To.IsZero() && req.From.After(req.To) {
		return req, true
	}
	for _, vals := range req.Equals {
		if len(vals) == 0 {
			return req, true
		}
	}
	return req, false
}

// planOp plans one operator on input columns: it returns a stage builder and the output columns.
func (r *run) planOp(op Op, in []Column) (func(stage) stage, []Column, error) {
	sc := &scope{cols: in, r: r}
	switch op := op.(type) {
	case *WhereOp:
		c, err := sc.compile(op.Pred)
		if err != nil {
			return nil, nil, err
		}
		return func(next stage) stage {
			return &filterStage{pred: c.fn, next: next}
		}, in, nil
	case *SearchOp:
		psc := *sc
		psc.search, psc.caseSensitive = true, op.CaseSensitive
		if op.Pred == nil {
			return func(next stage) stage { return next }, in, nil
		}
		c, err := psc.compile(op.Pred)
		if err != nil {
			return nil, nil, err
		}
		return func(next stage) stage { return &filterStage{pred: c.fn, next: next} }, in, nil
	case *ProjectOp:
		return r.planProject(op, sc)
	case *ProjectAwayOp:
		var keep []int
		var cols []Column
		for i, c := range in {
			drop := false
			for _, n := range op.Names {
				if matchPattern(n.Name, c.Name) {
					drop = true
				}
			}
			if !drop {
				keep = append(keep, i)
				cols = append(cols, c)
			}
		}
		for _, n := range op.Names {
			if strings.HasSuffix(n.Name, "*") {
				continue
			}
			if _, err := sc.column(&Ident{Pos: n.Pos, Name: n.Name}); err != nil {
				return nil, nil, err
			}
		}
		return func(next stage) stage { return &pickStage{idx: keep, next: next} }, cols, nil
	case *ProjectRenameOp:
		cols := append([]Column(nil), in...)
		for _, p := range op.Pairs {
			i, err := sc.column(&Ident{Pos: p[1].Pos, Name: p[1].Name})
			if err != nil {
				return nil, nil, err
			}
			cols[i].Name = p[0].Name
		}
		return func(next stage) stage { return next }, cols, nil
	case *SummarizeOp:
		return r.planSummarize(op, sc)
	case *SortOp:
		keys, err := r.sortKeys(op.Keys, sc)
		if err != nil {
			return nil, nil, err
		}
		return func(next stage) stage { return &sortStage{r: r, keys: keys, next: next} }, in, nil
	case *TopOp:
		n, err := r.constCount(op.N, "top", sc)
		if err != nil {
			return nil, nil, err
		}
		keys, err := r.sortKeys([]SortKey{op.Key}, sc)
		if err != nil {
			return nil, nil, err
		}
		return func(next stage) stage { return &sortStage{r: r, keys: keys, next: next, limit: n} }, in, nil
	case *TakeOp:
		n, err := r.constCount(op.N, "take", sc)
		if err != nil {
			return nil, nil, err
		}
		return func(next stage) stage { return &takeStage{n: n, next: next} }, in, nil
	case *DistinctOp:
		if op.Star {
			all := make([]int, len(in))
			for i := range in {
				all[i] = i
			}
			return func(next stage) stage {
				return &distinctStage{r: r, seen: map[string]struct{}{}, next: next, pick: all}
			}, in, nil
		}
		proj := &ProjectOp{Pos: op.Pos, Items: op.Items}
		b, cols, err := r.planProject(proj, sc)
		if err != nil {
			return nil, nil, err
		}
		all := make([]int, len(cols))
		for i := range cols {
			all[i] = i
		}
		return func(next stage) stage {
			return b(&distinctStage{r: r, seen: map[string]struct{}{}, next: next, pick: all})
		}, cols, nil
	case *CountOp:
		return func(next stage) stage { return &countStage{next: next} }, []Column{{Name: "Count", Type: Long}}, nil
	case *GetSchemaOp:
		cols := []Column{{Name: "ColumnName", Type: String}, {Name: "ColumnOrdinal", Type: Int}, {Name: "DataType", Type: String}, {Name: "ColumnType", Type: String}}
		schema := in
		return func(next stage) stage { return &schemaStage{cols: schema, next: next} }, cols, nil
	case *RenderOp:
		return func(next stage) stage { return next }, in, nil
	}
	return nil, nil, errorf(op.opPos(), "unsupported operator")
}

func matchPattern(pat, name string) bool {
	if strings.HasSuffix(pat, "*") {
		return strings.HasPrefix(name, strings.TrimSuffix(pat, "*"))
	}
	return pat == name
}

func (r *run) constCount(e Expr, op string, sc *scope) (int64, error) {
	c, err := sc.compile(e)
	if err != nil {
		return 0, err
	}
	if !c.konst {
		return 0, errorf(e.exprPos(), "%s needs a constant number of rows", op)
	}
	n := toLong(c.fn(nil))
	if n.K != Long || n.I < 0 {
		return 0, errorf(e.exprPos(), "%s needs a non-negative number of rows", op)
	}
	return n.I, nil
}

// planProject plans project and extend. Unnamed expressions are named after their column or
// property path, or Column1, Column2...
func (r *run) planProject(op *ProjectOp, sc *scope) (func(stage) stage, []Column, error) {
	var cols []Column
	var fns []evalFn
	var src []int // for extend: input index kept at each output position (-1 for computed)
	if op.Extend {
		cols = append(cols, sc.cols...)
		for i := range sc.cols {
			idx := i
			fns = append(fns, nil)
			src = append(src, idx)
		}
	}
	auto := 0
	for _, it := range op.Items {
		c, err := sc.compile(it.Expr)
		if err != nil {
			return nil, nil, err
		}
		name := it.Name
		if name == "" {
			name = projectName(it.Expr)
			if name != "" && !op.Extend && hasColumn(cols, name) {
				name = ""
			}
			if name == "" {
				auto++
				name = "Column" + strconv.Itoa(auto)
			}
		}
		pos := -1
		for i, col := range cols {
			if col.Name == name {
				pos = i
			}
		}
		if pos >= 0 {
			cols[pos] = Column{Name: name, Type: c.typ}
			fns[pos] = c.fn
			if op.Extend {
				src[pos] = -1
			}
			continue
		}
		cols = append(cols, Column{Name: name, Type: c.typ})
		fns = append(fns, c.fn)
		src = append(src, -1)
	}
	return func(next stage) stage {
		return &projectStage{fns: fns, src: src, next: next}
	}, cols, nil
}

// projectName names an unnamed project or extend column as Kusto does: a column keeps its
// name, a property path x.y becomes x_y, and so does a conversion of one (tostring(x.y)).
// Anything else is named ColumnN.
func projectName(e Expr) string {
	switch e := unparen(e).(type) {
	case *Ident, *Member:
		return exprName(e)
	case *Call:
		if len(e.Args) == 1 {
			if _, ok := unparen(e.Args[0]).(*Member); ok {
				return exprName(e.Args[0])
			}
		}
	}
	return ""
}

func (r *run) sortKeys(keys []SortKey, sc *scope) ([]sortKey, error) {
	out := make([]sortKey, len(keys))
	for i, k := range keys {
		c, err := sc.compile(k.Expr)
		if err != nil {
			return nil, err
		}
		nullsFirst := k.Asc // nulls come first ascending, last descending
		if k.NullsSet {
			nullsFirst = k.NullsFirst
		}
		out[i] = sortKey{fn: c.fn, asc: k.Asc, nullsFirst: nullsFirst}
	}
	return out, nil
}

func (r *run) planSummarize(op *SummarizeOp, sc *scope) (func(stage) stage, []Column, error) {
	var cols []Column
	var keyFns []evalFn
	auto := 0
	for _, b := range op.By {
		c, err := sc.compile(b.Expr)
		if err != nil {
			return nil, nil, err
		}
		name := b.Name
		if name == "" {
			name = exprName(b.Expr)
		}
		if name == "" {
			auto++
			name = "Column" + strconv.Itoa(auto)
		}
		cols = append(cols, Column{Name: name, Type: c.typ})
		keyFns = append(keyFns, c.fn)
	}
	var specs []*aggSpec
	for _, a := range op.Aggs {
		spec, err := sc.aggregate(a)
		if err != nil {
			return nil, nil, err
		}
		specs = append(specs, spec)
		for i, n := range spec.names {
			name := n
			for dup := 1; hasColumn(cols, name); dup++ {
				name = n + strconv.Itoa(dup)
			}
			spec.names[i] = name
			cols = append(cols, Column{Name: name, Type: spec.kinds[i]})
		}
	}
	return func(next stage) stage {
		return &summarizeStage{r: r, keys: keyFns, specs: specs, groups: map[string]*group{}, next: next}
	}, cols, nil
}

func hasColumn(cols []Column, name string) bool {
	for _, c := range cols {
		if c.Name == name {
			return true
		}
	}
	return false
}

// Stages.

type filterStage struct {
	pred evalFn
	next stage
}

func (s *filterStage) push(row Row) bool {
	if !s.pred(row).Truth() {
		return true
	}
	return s.next.push(row)
}
func (s *filterStage) finish() error { return s.next.finish() }

type projectStage struct {
	fns  []evalFn
	src  []int
	next stage
}

func (s *projectStage) push(row Row) bool {
	out := make(Row, len(s.fns))
	for i, f := range s.fns {
		if s.src[i] >= 0 {
			out[i] = row[s.src[i]]
			continue
		}
		out[i] = f(row)
	}
	return s.next.push(out)
}
func (s *projectStage) finish() error { return s.next.finish() }

type pickStage struct {
	idx  []int
	next stage
}

func (s *pickStage) push(row Row) bool {
	out := make(Row, len(s.idx))
	for i, j := range s.idx {
		out[i] = row[j]
	}
	return s.next.push(out)
}
func (s *pickStage) finish() error { return s.next.finish() }

type takeStage struct {
	n, seen int64
	next    stage
}

func (s *takeStage) push(row Row) bool {
	if s.seen >= s.n {
		return false
	}
	s.seen++
	if !s.next.push(row) {
		return false
	}
	return s.seen < s.n
}
func (s *takeStage) finish() error { return s.next.finish() }

type countStage struct {
	n    int64
	next stage
}

func (s *countStage) push(Row) bool { s.n++; return true }
func (s *countStage) finish() error {
	s.next.push(Row{LongValue(s.n)})
	return s.next.finish()
}

type schemaStage struct {
	cols []Column
	next stage
}

func (s *schemaStage) push(Row) bool { return false }
func (s *schemaStage) finish() error {
	for i, c := range s.cols {
		t := c.Type
		if t == Null {
			t = String
		}
		net := map[Kind]string{Bool: "System.SByte", Int: "System.Int32", Long: "System.Int64", Real: "System.Double",
			String: "System.String", DateTime: "System.DateTime", TimeSpan: "System.TimeSpan", Dynamic: "System.Object"}[t]
		if !s.next.push(Row{StringValue(c.Name), IntValue(int64(i)), StringValue(net), StringValue(t.String())}) {
			break
		}
	}
	return s.next.finish()
}

type distinctStage struct {
	r    *run
	seen map[string]struct{}
	buf  []byte
	pick []int
	next stage
}

func (s *distinctStage) push(row Row) bool {
	s.buf = s.buf[:0]
	for _, i := range s.pick {
		s.buf = appendKey(s.buf, row[i])
	}
	if _, ok := s.seen[string(s.buf)]; ok {
		return true
	}
	s.seen[string(s.buf)] = struct{}{}
	s.r.grow(int64(len(s.buf) + 48))
	if s.r.err != nil {
		return false
	}
	return s.next.push(row)
}
func (s *distinctStage) finish() error { return s.next.finish() }

type sortKey struct {
	fn         evalFn
	asc        bool
	nullsFirst bool
}

// sortStage sorts its input (sort by, order by) or keeps the first limit rows of that order
// (top).
type sortStage struct {
	r     *run
	keys  []sortKey
	limit int64 // 0: no limit (sort)
	rows  []keyedRow
	next  stage
}

type keyedRow struct {
	row  Row
	keys []Value
}

func (s *sortStage) less(a, b keyedRow) bool {
	for i, k := range s.keys {
		x, y := a.keys[i], b.keys[i]
		xn, yn := x.IsNull(), y.IsNull()
		if xn || yn {
			if xn && yn {
				continue
			}
			return xn == k.nullsFirst
		}
		c := sortLess(x, y)
		if c == 0 {
			continue
		}
		if k.asc {
			return c < 0
		}
		return c > 0
	}
	return false
}

func (s *sortStage) push(row Row) bool {
	kr := keyedRow{row: row, keys: make([]Value, len(s.keys))}
	sz := 24
	for i, k := range s.keys {
		kr.keys[i] = k.fn(row)
		sz += kr.keys[i].size()
	}
	for _, v := range row {
		sz += v.size()
	}
	s.rows = append(s.rows, kr)
	s.r.grow(int64(sz))
	if n := int64(len(s.rows)); s.limit > 0 && n > s.limit && n-s.limit >= s.limit+1024 {
		// Keep memory bounded for top: sort and drop what can no longer make it.
		sort.SliceStable(s.rows, func(i, j int) bool { return s.less(s.rows[i], s.rows[j]) })
		for _, d := range s.rows[s.limit:] {
			s.r.mem -= rowSize(d)
		}
		clear(s.rows[s.limit:])
		s.rows = s.rows[:s.limit]
	}
	return s.r.err == nil
}

func rowSize(kr keyedRow) int64 {
	n := int64(24)
	for _, v := range kr.keys {
		n += int64(v.size())
	}
	for _, v := range kr.row {
		n += int64(v.size())
	}
	return n
}

func (s *sortStage) finish() error {
	sort.SliceStable(s.rows, func(i, j int) bool { return s.less(s.rows[i], s.rows[j]) })
	rows := s.rows
	if s.limit > 0 && int64(len(rows)) > s.limit {
		rows = rows[:s.limit]
	}
	for i, kr := range rows {
		if i&1023 == 0 && s.r.ctx.Err() != nil {
			return s.r.ctx.Err()
		}
		if !s.next.push(kr.row) {
			break
		}
	}
	s.rows = nil
	return s.next.finish()
}

type group struct {
	keys   []Value
	states []aggState
}

type summarizeStage struct {
	r      *run
	keys   []evalFn
	specs  []*aggSpec
	groups map[string]*group
	order  []*group
	buf    []byte
	kvals  []Value
	next   stage
}

func (s *summarizeStage) push(row Row) bool {
	s.buf = s.buf[:0]
	if cap(s.kvals) < len(s.keys) {
		s.kvals = make([]Value, len(s.keys))
	}
	kv := s.kvals[:len(s.keys)]
	for i, k := range s.keys {
		kv[i] = k(row)
		s.buf = appendKey(s.buf, kv[i])
	}
	g, ok := s.groups[string(s.buf)]
	if !ok {
		g = &group{keys: append([]Value(nil), kv...), states: make([]aggState, len(s.specs))}
		sz := 96 + len(s.buf)
		for i, sp := range s.specs {
			g.states[i] = sp.newState()
			sz += g.states[i].size()
		}
		for _, v := range g.keys {
			sz += v.size()
		}
		s.groups[string(s.buf)] = g
		s.order = append(s.order, g)
		s.r.grow(int64(sz))
		if s.r.err != nil {
			return false
		}
	}
	for _, st := range g.states {
		st.add(row)
	}
	return s.r.err == nil
}

func (s *summarizeStage) finish() error {
	if len(s.keys) == 0 && len(s.order) == 0 {
		// No rows and no keys: one row of empty aggregates.
		g := &group{states: make([]aggState, len(s.specs))}
		for i, sp := range s.specs {
			g.states[i] = sp.newState()
		}
		s.order = append(s.order, g)
	}
	for i, g := range s.order {
		if i&1023 == 0 && s.r.ctx.Err() != nil {
			return s.r.ctx.Err()
		}
		row := append(Row(nil), g.keys...)
		for _, st := range g.states {
			row = append(row, st.result()...)
		}
		if !s.next.push(row) {
			break
		}
	}
	s.groups, s.order = nil, nil
	return s.next.finish()
}
