package kql

import (
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// scalarFunc describes a scalar function.
type scalarFunc struct {
	min, max int  // argument count; max -1 means any
	ret      Kind // Null when it depends on the arguments
	// pure functions of constant arguments are folded once.
	impure bool
	fn     func(r *run, args []Value) Value
}

// Explainer gives the cause and resolution of an IoT Hub error code or condition name, for the
// explain() function. It returns false for values it does not know.
type Explainer func(codeOrName string) (map[string]any, bool)

var scalarFuncs map[string]scalarFunc

func init() {
	scalarFuncs = map[string]scalarFunc{
		"parse_json": {1, 1, Dynamic, false, func(_ *run, a []Value) Value { return parseJSONValue(a[0]) }},
		"todynamic":  {1, 1, Dynamic, false, func(_ *run, a []Value) Value { return parseJSONValue(a[0]) }},
		"tostring":   {1, 1, String, false, func(_ *run, a []Value) Value { return toStr(a[0]) }},
		"toint":      {1, 1, Int, false, func(_ *run, a []Value) Value { return toInt(a[0]) }},
		"tolong":     {1, 1, Long, false, func(_ *run, a []Value) Value { return toLong(a[0]) }},
		"todouble":   {1, 1, Real, false, func(_ *run, a []Value) Value { return toReal(a[0]) }},
		"toreal":     {1, 1, Real, false, func(_ *run, a []Value) Value { return toReal(a[0]) }},
		"tobool":     {1, 1, Bool, false, func(_ *run, a []Value) Value { return toBool(a[0]) }},
		"toboolean":  {1, 1, Bool, false, func(_ *run, a []Value) Value { return toBool(a[0]) }},
		"todatetime": {1, 1, DateTime, false, func(_ *run, a []Value) Value { return toDateTime(a[0]) }},
		"totimespan": {1, 1, TimeSpan, false, func(_ *run, a []Value) Value { return toTimeSpan(a[0]) }},
		"tolower":    {1, 1, String, false, func(_ *run, a []Value) Value { return StringValue(strings.ToLower(a[0].String())) }},
		"toupper":    {1, 1, String, false, func(_ *run, a []Value) Value { return StringValue(strings.ToUpper(a[0].String())) }},
		"strlen":     {1, 1, Long, false, func(_ *run, a []Value) Value { return LongValue(int64(utf8.RuneCountInString(a[0].String()))) }},
		"strcat":     {1, 64, String, false, fnStrcat},
		"substring":  {2, 3, String, false, fnSubstring},
		"trim":       {2, 2, String, false, fnTrim},
		"split":      {2, 3, Dynamic, false, fnSplit},
		"replace_string": {3, 3, String, false, func(_ *run, a []Value) Value {
			return StringValue(strings.ReplaceAll(a[0].String(), a[1].String(), a[2].String()))
		}},
		"extract":         {3, 3, String, false, nil}, // compiled specially (regex)
		"isempty":         {1, 1, Bool, false, func(_ *run, a []Value) Value { return BoolValue(a[0].IsNull() || a[0].String() == "") }},
		"isnotempty":      {1, 1, Bool, false, func(_ *run, a []Value) Value { return BoolValue(!a[0].IsNull() && a[0].String() != "") }},
		"isnull":          {1, 1, Bool, false, func(_ *run, a []Value) Value { return BoolValue(a[0].IsNull()) }},
		"isnotnull":       {1, 1, Bool, false, func(_ *run, a []Value) Value { return BoolValue(!a[0].IsNull()) }},
		"iff":             {3, 3, Null, false, fnIff},
		"iif":             {3, 3, Null, false, fnIff},
		"case":            {3, 255, Null, false, fnCase},
		"coalesce":        {1, 64, Null, false, fnCoalesce},
		"not":             {1, 1, Bool, false, func(_ *run, a []Value) Value { return BoolValue(!a[0].Truth()) }},
		"now":             {0, 1, DateTime, true, fnNow},
		"ago":             {1, 1, DateTime, true, fnAgo},
		"bin":             {2, 2, Null, false, fnBin},
		"floor":           {2, 2, Null, false, fnBin},
		"startofday":      {1, 1, DateTime, false, func(_ *run, a []Value) Value { return truncTime(a[0], 24*time.Hour) }},
		"startofhour":     {1, 1, DateTime, false, func(_ *run, a []Value) Value { return truncTime(a[0], time.Hour) }},
		"datetime_add":    {3, 3, DateTime, false, fnDatetimeAdd},
		"format_datetime": {2, 2, String, false, fnFormatDatetime},
		"abs":             {1, 1, Null, false, fnAbs},
		"round":           {1, 2, Real, false, fnRound},
		"min_of":          {1, 64, Null, false, func(_ *run, a []Value) Value { return extreme(a, -1) }},
		"max_of":          {1, 64, Null, false, func(_ *run, a []Value) Value { return extreme(a, 1) }},
		"array_length":    {1, 1, Long, false, fnArrayLength},
		"bag_keys":        {1, 1, Dynamic, false, fnBagKeys},
		"gettype":         {1, 1, String, false, fnGetType},
		"explain":         {1, 2, Dynamic, false, fnExplain},
		"$has_any":        {2, 255, Bool, false, func(_ *run, a []Value) Value { return hasAnyAll(a, false) }},
		"$has_all":        {2, 255, Bool, false, func(_ *run, a []Value) Value { return hasAnyAll(a, true) }},
	}
}

func (sc *scope) call(e *Call) (compiled, error) {
	if _, ok := aggFuncs[e.Name]; ok {
		return compiled{}, errorf(e.Pos, "%s() is an aggregation: use it in summarize", e.Name)
	}
	f, ok := scalarFuncs[e.Name]
	if !ok {
		if _, ok := scalarFuncs[strings.ToLower(e.Name)]; ok {
			return compiled{}, errorf(e.Pos, "unknown function '%s' (function names are lower case: %s)", e.Name, strings.ToLower(e.Name))
		}
		return compiled{}, errorf(e.Pos, "unknown function '%s'", e.Name)
	}
	if len(e.Args) < f.min || f.max >= 0 && len(e.Args) > f.max {
		want := strconv.Itoa(f.min)
		if f.max != f.min {
			want = strconv.Itoa(f.min) + " to " + strconv.Itoa(f.max)
		}
		return compiled{}, errorf(e.Pos, "%s() takes %s arguments, got %d", e.Name, want, len(e.Args))
	}
	args := make([]compiled, len(e.Args))
	allConst := true
	for i, a := range e.Args {
		c, err := sc.compile(a)
		if err != nil {
			return compiled{}, err
		}
		args[i] = c
		allConst = allConst && c.konst
	}
	if e.Name == "extract" {
		return sc.extract(e, args)
	}
	r := sc.r
	fn := f.fn
	typ := f.ret
	switch e.Name {
	case "iff", "iif":
		typ = args[1].typ
		if typ != args[2].typ {
			typ = Null
		}
	case "bin", "floor", "abs":
		typ = args[0].typ
	}
	out := compiled{typ: typ, konst: allConst}
	switch len(args) {
	case 0:
		out.fn = func(Row) Value { return fn(r, nil) }
	case 1:
		a0 := args[0].fn
		out.fn = func(row Row) Value {
			var buf [1]Value
			buf[0] = a0(row)
			return fn(r, buf[:])
		}
	case 2:
		a0, a1 := args[0].fn, args[1].fn
		out.fn = func(row Row) Value {
			var buf [2]Value
			buf[0], buf[1] = a0(row), a1(row)
			return fn(r, buf[:])
		}
	default:
		out.fn = func(row Row) Value {
			vals := make([]Value, len(args))
			for i, a := range args {
				vals[i] = a.fn(row)
			}
			return fn(r, vals)
		}
	}
	// now() and ago() are fixed for the whole query, so they fold too.
	return fold(out), nil
}

func (sc *scope) extract(e *Call, args []compiled) (compiled, error) {
	if !args[0].konst {
		return compiled{}, errorf(e.Args[0].exprPos(), "extract() needs a constant regular expression")
	}
	re, err := compileRegex(args[0].fn(nil).String(), e.Args[0].exprPos())
	if err != nil {
		return compiled{}, err
	}
	group, src := args[1].fn, args[2].fn
	return compiled{fn: func(r Row) Value { return extractGroup(re, group(r), src(r)) }, typ: String}, nil
}

func extractGroup(re *regexp.Regexp, group, src Value) Value {
	g := toLong(group)
	if g.K != Long || src.IsNull() {
		return Value{}
	}
	m := re.FindStringSubmatch(src.String())
	if m == nil || g.I < 0 || int(g.I) >= len(m) {
		return Value{}
	}
	return StringValue(m[g.I])
}

func parseJSONValue(v Value) Value {
	switch v.K {
	case Dynamic:
		if s, ok := v.D.(string); ok {
			return ParseJSON(s)
		}
		return v
	case String:
		return ParseJSON(v.S)
	case Null:
		return DynamicValue(nil)
	}
	return toDynamic(v)
}

func fnStrcat(_ *run, a []Value) Value {
	var sb strings.Builder
	for _, v := range a {
		sb.WriteString(v.String())
	}
	return StringValue(sb.String())
}

func fnSubstring(_ *run, a []Value) Value {
	s := []rune(a[0].String())
	start := toLong(a[1])
	if start.K != Long {
		return Value{}
	}
	i := start.I
	if i < 0 {
		i = 0
	}
	if i > int64(len(s)) {
		return StringValue("")
	}
	j := int64(len(s))
	if len(a) == 3 {
		n := toLong(a[2])
		if n.K != Long || n.I < 0 {
			return Value{}
		}
		if i+n.I < j {
			j = i + n.I
		}
	}
	return StringValue(string(s[i:j]))
}

func fnTrim(_ *run, a []Value) Value {
	// trim(regex, text): Roost trims the literal characters given, the common use.
	cut := a[0].String()
	return StringValue(strings.Trim(a[1].String(), cut))
}

func fnSplit(_ *run, a []Value) Value {
	parts := strings.Split(a[0].String(), a[1].String())
	if len(a) == 3 {
		i := toLong(a[2])
		if i.K != Long || i.I < 0 || i.I >= int64(len(parts)) {
			return DynamicValue([]any{})
		}
		return DynamicValue([]any{parts[i.I]})
	}
	out := make([]any, len(parts))
	for i, p := range parts {
		out[i] = p
	}
	return DynamicValue(out)
}

func fnIff(_ *run, a []Value) Value {
	if a[0].Truth() {
		return a[1]
	}
	return a[2]
}

func fnCase(_ *run, a []Value) Value {
	for i := 0; i+1 < len(a); i += 2 {
		if a[i].Truth() {
			return a[i+1]
		}
	}
	return a[len(a)-1]
}

func fnCoalesce(_ *run, a []Value) Value {
	for _, v := range a {
		if !v.IsNull() && !(v.K == String && v.S == "") {
			return v
		}
	}
	return Value{}
}

func fnNow(r *run, a []Value) Value {
	t := r.now
	if len(a) == 1 && a[0].K == TimeSpan {
		t = t.Add(time.Duration(a[0].I))
	}
	return TimeValue(t)
}

func fnAgo(r *run, a []Value) Value {
	d := toTimeSpan(a[0])
	if d.K != TimeSpan {
		return Value{}
	}
	return TimeValue(r.now.Add(-time.Duration(d.I)))
}

func fnBin(_ *run, a []Value) Value {
	v, size := a[0].undyn(), a[1].undyn()
	if v.IsNull() || size.IsNull() {
		return Value{}
	}
	switch v.K {
	case DateTime:
		if size.K != TimeSpan || size.I <= 0 {
			return Value{}
		}
		return Value{K: DateTime, I: floorDiv(v.I, size.I) * size.I}
	case TimeSpan:
		if size.K != TimeSpan || size.I <= 0 {
			return Value{}
		}
		return Value{K: TimeSpan, I: floorDiv(v.I, size.I) * size.I}
	case Int, Long:
		if size.K == Int || size.K == Long {
			if size.I <= 0 {
				return Value{}
			}
			return Value{K: v.K, I: floorDiv(v.I, size.I) * size.I}
		}
		f, ok := size.num()
		if !ok || f <= 0 {
			return Value{}
		}
		return RealValue(math.Floor(float64(v.I)/f) * f)
	case Real:
		f, ok := size.num()
		if !ok || f <= 0 {
			return Value{}
		}
		return RealValue(math.Floor(v.F/f) * f)
	}
	return Value{}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func truncTime(v Value, d time.Duration) Value {
	v = toDateTime(v)
	if v.K != DateTime {
		return Value{}
	}
	return Value{K: DateTime, I: floorDiv(v.I, int64(d)) * int64(d)}
}

func fnDatetimeAdd(_ *run, a []Value) Value {
	part := strings.ToLower(a[0].String())
	n := toLong(a[1])
	t := toDateTime(a[2])
	if n.K != Long || t.K != DateTime {
		return Value{}
	}
	tm := t.Time()
	switch part {
	case "year":
		tm = tm.AddDate(int(n.I), 0, 0)
	case "month":
		tm = tm.AddDate(0, int(n.I), 0)
	case "week":
		tm = tm.AddDate(0, 0, 7*int(n.I))
	case "day":
		tm = tm.AddDate(0, 0, int(n.I))
	case "hour":
		tm = tm.Add(time.Duration(n.I) * time.Hour)
	case "minute":
		tm = tm.Add(time.Duration(n.I) * time.Minute)
	case "second":
		tm = tm.Add(time.Duration(n.I) * time.Second)
	case "millisecond":
		tm = tm.Add(time.Duration(n.I) * time.Millisecond)
	default:
		return Value{}
	}
	return TimeValue(tm)
}

// fnFormatDatetime supports the common .NET-style tokens: yyyy MM dd HH mm ss fff.
func fnFormatDatetime(_ *run, a []Value) Value {
	t := toDateTime(a[0])
	if t.K != DateTime {
		return Value{}
	}
	layout := a[1].String()
	r := strings.NewReplacer("yyyy", "2006", "yy", "06", "MM", "01", "dd", "02", "HH", "15", "hh", "03",
		"mm", "04", "ss", "05", "fffffff", "0000000", "ffffff", "000000", "fff", "000", "tt", "PM")
	return StringValue(t.Time().Format(r.Replace(layout)))
}

func fnAbs(_ *run, a []Value) Value {
	v := a[0].undyn()
	switch v.K {
	case Int, Long, TimeSpan:
		if v.I < 0 {
			v.I = -v.I
		}
		return v
	case Real:
		return RealValue(math.Abs(v.F))
	}
	return Value{}
}

func fnRound(_ *run, a []Value) Value {
	f, ok := a[0].undyn().num()
	if !ok {
		return Value{}
	}
	digits := int64(0)
	if len(a) == 2 {
		d := toLong(a[1])
		if d.K != Long || d.I < -15 || d.I > 15 {
			return Value{}
		}
		digits = d.I
	}
	p := math.Pow(10, float64(digits))
	return RealValue(math.Round(f*p) / p)
}

func extreme(a []Value, sign int) Value {
	var best Value
	for _, v := range a {
		if v.IsNull() {
			continue
		}
		if best.IsNull() {
			best = v
			continue
		}
		if c, ok := compare(v, best); ok && c*sign > 0 {
			best = v
		}
	}
	return best
}

func fnArrayLength(_ *run, a []Value) Value {
	if a[0].K == Dynamic {
		if arr, ok := a[0].D.([]any); ok {
			return LongValue(int64(len(arr)))
		}
	}
	return Value{}
}

func fnBagKeys(_ *run, a []Value) Value {
	if a[0].K == Dynamic {
		if m, ok := a[0].D.(map[string]any); ok {
			keys := sortedKeys(m)
			out := make([]any, len(keys))
			for i, k := range keys {
				out[i] = k
			}
			return DynamicValue(out)
		}
	}
	return Value{}
}

func fnGetType(_ *run, a []Value) Value {
	v := a[0]
	if v.K == Dynamic {
		switch v.D.(type) {
		case map[string]any:
			return StringValue("dictionary")
		case []any:
			return StringValue("array")
		case nil:
			return StringValue("null")
		}
		v = v.undyn()
	}
	if v.K == Real {
		return StringValue("real")
	}
	return StringValue(v.K.String())
}

// fnExplain gives the cause and resolution of an IoT Hub error code (or a condition's name, as
// the second argument or in place of the code) as a dynamic bag.
func fnExplain(r *run, a []Value) Value {
	if r.explain == nil {
		return DynamicValue(nil)
	}
	for _, v := range a {
		if v.IsNull() || v.String() == "" {
			continue
		}
		if m, ok := r.explain(v.String()); ok {
			return DynamicValue(m)
		}
	}
	return DynamicValue(nil)
}

func hasAnyAll(a []Value, all bool) Value {
	s := a[0].String()
	var terms []string
	for _, v := range a[1:] {
		if v.K == Dynamic {
			if arr, ok := v.D.([]any); ok {
				for _, x := range arr {
					terms = append(terms, DynamicValue(x).String())
				}
				continue
			}
		}
		terms = append(terms, v.String())
	}
	for _, t := range terms {
		ok := hasTerm(s, t, false, false, false)
		if ok && !all {
			return BoolValue(true)
		}
		if !ok && all {
			return BoolValue(false)
		}
	}
	return BoolValue(all && len(terms) > 0)
}

// Aggregations.

type aggState interface {
	add(r Row)
	result() []Value
	size() int
}

// aggSpec is a compiled aggregation: the columns it produces and how to make a group's state.
type aggSpec struct {
	names    []string
	kinds    []Kind
	newState func() aggState
}

type aggFunc struct {
	min, max int
	prefix   string // default column name prefix: "sum" gives sum_X
}

var aggFuncs = map[string]aggFunc{
	"count":     {0, 0, "count"},
	"countif":   {1, 1, "countif"},
	"dcount":    {1, 2, "dcount"},
	"dcountif":  {2, 3, "dcountif"},
	"sum":       {1, 1, "sum"},
	"sumif":     {2, 2, "sumif"},
	"avg":       {1, 1, "avg"},
	"avgif":     {2, 2, "avgif"},
	"min":       {1, 1, "min"},
	"max":       {1, 1, "max"},
	"make_set":  {1, 2, "set"},
	"make_list": {1, 2, "list"},
	"arg_max":   {1, 64, "max"},
	"arg_min":   {1, 64, "min"},
	"any":       {1, 64, "any"},
	"take_any":  {1, 64, "any"},
}

// exprName derives a column name from an expression, as Kusto names unnamed columns: a
// column's own name, a property path joined with '_', or the first such name inside a call.
func exprName(e Expr) string {
	switch e := unparen(e).(type) {
	case *Ident:
		return e.Name
	case *Member:
		base := exprName(e.X)
		if base == "" {
			return ""
		}
		if e.Index != nil {
			if lit, ok := e.Index.(*Literal); ok {
				return base + "_" + lit.Val.String()
			}
			return base
		}
		return base + "_" + e.Name
	case *Call:
		for _, a := range e.Args {
			if n := exprName(a); n != "" {
				return n
			}
		}
	case *Binary:
		if n := exprName(e.X); n != "" {
			return n
		}
		return exprName(e.Y)
	case *Unary:
		return exprName(e.X)
	}
	return ""
}

func (sc *scope) aggregate(ne NamedExpr) (*aggSpec, error) {
	call, ok := unparen(ne.Expr).(*Call)
	if !ok {
		return nil, errorf(ne.Expr.exprPos(), "summarize needs an aggregation such as count() or max(TimeGenerated)")
	}
	af, ok := aggFuncs[call.Name]
	if !ok {
		if _, scalar := scalarFuncs[call.Name]; scalar {
			return nil, errorf(call.Pos, "%s() is not an aggregation (aggregations: count, countif, dcount, sum, avg, min, max, make_set, make_list, arg_max, arg_min, take_any)", call.Name)
		}
		return nil, errorf(call.Pos, "unknown aggregation '%s'", call.Name)
	}
	if len(call.Args) < af.min || len(call.Args) > af.max {
		return nil, errorf(call.Pos, "%s() takes %d to %d arguments, got %d", call.Name, af.min, af.max, len(call.Args))
	}
	name := ne.Name
	defName := func() string {
		if call.Name == "count" || call.Name == "countif" {
			return af.prefix + "_"
		}
		return af.prefix + "_" + exprName(call.Args[0])
	}
	if name == "" && len(ne.Names) == 0 {
		name = defName()
	}
	var args []compiled
	for _, a := range call.Args {
		if _, star := a.(*Star); star {
			args = append(args, compiled{})
			continue
		}
		c, err := sc.compile(a)
		if err != nil {
			return nil, err
		}
		args = append(args, c)
	}
	spec := &aggSpec{names: []string{name}}
	r := sc.r
	switch call.Name {
	case "count":
		spec.kinds = []Kind{Long}
		spec.newState = func() aggState { return &countAgg{} }
	case "countif":
		p := args[0].fn
		spec.kinds = []Kind{Long}
		spec.newState = func() aggState { return &countAgg{pred: p} }
	case "dcount", "dcountif":
		x := args[0].fn
		var p evalFn
		if call.Name == "dcountif" {
			p = args[1].fn
		}
		spec.kinds = []Kind{Long}
		spec.newState = func() aggState { return &dcountAgg{x: x, pred: p, seen: map[string]struct{}{}, r: r} }
	case "sum", "sumif", "avg", "avgif":
		x := args[0].fn
		var p evalFn
		if strings.HasSuffix(call.Name, "if") {
			p = args[1].fn
		}
		avg := strings.HasPrefix(call.Name, "avg")
		kind := Real
		if !avg && (args[0].typ == Long || args[0].typ == Int) {
			kind = Long
		} else if !avg && args[0].typ == TimeSpan {
			kind = TimeSpan
		}
		spec.kinds = []Kind{kind}
		spec.newState = func() aggState { return &sumAgg{x: x, pred: p, avg: avg, kind: kind} }
	case "min", "max":
		x := args[0].fn
		sign := 1
		if call.Name == "min" {
			sign = -1
		}
		spec.kinds = []Kind{args[0].typ}
		spec.newState = func() aggState { return &extremeAgg{x: x, sign: sign} }
	case "make_set", "make_list":
		x := args[0].fn
		limit := int64(1 << 20)
		if len(args) == 2 {
			if !args[1].konst {
				return nil, errorf(call.Pos, "%s()'s size limit must be a constant", call.Name)
			}
			if n := toLong(args[1].fn(nil)); n.K == Long && n.I > 0 {
				limit = n.I
			}
		}
		set := call.Name == "make_set"
		spec.kinds = []Kind{Dynamic}
		spec.newState = func() aggState { return &listAgg{x: x, set: set, limit: limit, seen: map[string]struct{}{}} }
	case "arg_max", "arg_min", "any", "take_any":
		return sc.argExtreme(call, ne, args, af.prefix)
	}
	if len(ne.Names) > 0 {
		if len(ne.Names) != len(spec.names) {
			return nil, errorf(call.Pos, "%d names given for %d columns", len(ne.Names), len(spec.names))
		}
		spec.names = ne.Names
	}
	return spec, nil
}

// argExtreme compiles arg_max, arg_min and take_any: the row with the largest (smallest, any)
// first argument, returning the other arguments (or every column for *).
func (sc *scope) argExtreme(call *Call, ne NamedExpr, args []compiled, prefix string) (*aggSpec, error) {
	sign := 0
	switch call.Name {
	case "arg_max":
		sign = 1
	case "arg_min":
		sign = -1
	}
	var fns []evalFn
	var names []string
	var kinds []Kind
	used := map[string]bool{}
	addCol := func(name string, fn evalFn, k Kind) {
		if used[name] {
			return
		}
		used[name] = true
		names = append(names, name)
		fns = append(fns, fn)
		kinds = append(kinds, k)
	}
	first := 0
	var key evalFn
	if sign != 0 {
		if _, star := call.Args[0].(*Star); star {
			return nil, errorf(call.Pos, "%s()'s first argument is the expression to maximize; it cannot be *", call.Name)
		}
		key = args[0].fn
		kn := exprName(call.Args[0])
		if _, isIdent := unparen(call.Args[0]).(*Ident); !isIdent || kn == "" {
			kn = prefix + "_" + kn
		}
		if ne.Name != "" {
			kn = ne.Name
		}
		addCol(kn, key, args[0].typ)
		first = 1
	}
	for i := first; i < len(call.Args); i++ {
		if _, star := call.Args[i].(*Star); star {
			for j, c := range sc.cols {
				j := j
				addCol(c.Name, func(r Row) Value { return r[j] }, c.Type)
			}
			continue
		}
		n := exprName(call.Args[i])
		if n == "" {
			n = "Column" + strconv.Itoa(i)
		}
		if sign == 0 {
			n = prefix + "_" + n
			if ne.Name != "" && len(call.Args) == 1 {
				n = ne.Name
			}
		}
		addCol(n, args[i].fn, args[i].typ)
	}
	if len(ne.Names) > 0 {
		if len(ne.Names) > len(names) {
			return nil, errorf(call.Pos, "%d names given for %d columns", len(ne.Names), len(names))
		}
		copy(names, ne.Names)
	}
	return &aggSpec{names: names, kinds: kinds, newState: func() aggState {
		return &argAgg{key: key, sign: sign, fns: fns}
	}}, nil
}

type countAgg struct {
	pred evalFn
	n    int64
}

func (a *countAgg) add(r Row) {
	if a.pred == nil || a.pred(r).Truth() {
		a.n++
	}
}
func (a *countAgg) result() []Value { return []Value{LongValue(a.n)} }
func (a *countAgg) size() int       { return 32 }

type dcountAgg struct {
	x, pred evalFn
	seen    map[string]struct{}
	buf     []byte
	bytes   int
	r       *run
}

func (a *dcountAgg) add(r Row) {
	if a.pred != nil && !a.pred(r).Truth() {
		return
	}
	v := a.x(r)
	if v.IsNull() {
		return
	}
	a.buf = appendKey(a.buf[:0], v)
	if _, ok := a.seen[string(a.buf)]; !ok {
		a.seen[string(a.buf)] = struct{}{}
		a.bytes += len(a.buf) + 48
		a.r.grow(int64(len(a.buf) + 48))
	}
}
func (a *dcountAgg) result() []Value { return []Value{LongValue(int64(len(a.seen)))} }
func (a *dcountAgg) size() int       { return 64 }

type sumAgg struct {
	x, pred evalFn
	avg     bool
	kind    Kind
	isum    int64
	fsum    float64
	n       int64
}

func (a *sumAgg) add(r Row) {
	if a.pred != nil && !a.pred(r).Truth() {
		return
	}
	v := a.x(r).undyn()
	switch v.K {
	case Int, Long, TimeSpan:
		a.isum += v.I
		a.fsum += float64(v.I)
	case Real:
		a.fsum += v.F
	case Bool:
		a.isum += v.I
		a.fsum += float64(v.I)
	default:
		return
	}
	a.n++
}

func (a *sumAgg) result() []Value {
	switch {
	case a.avg:
		if a.n == 0 {
			return []Value{{}}
		}
		return []Value{RealValue(a.fsum / float64(a.n))}
	case a.kind == Long:
		return []Value{LongValue(a.isum)}
	case a.kind == TimeSpan:
		return []Value{SpanValue(time.Duration(a.isum))}
	}
	if a.n == 0 {
		return []Value{{}}
	}
	return []Value{RealValue(a.fsum)}
}
func (a *sumAgg) size() int { return 64 }

type extremeAgg struct {
	x    evalFn
	sign int
	best Value
}

func (a *extremeAgg) add(r Row) {
	v := a.x(r)
	if v.IsNull() {
		return
	}
	if a.best.IsNull() {
		a.best = v
		return
	}
	if c, ok := compare(v, a.best); ok && c*a.sign > 0 {
		a.best = v
	}
}
func (a *extremeAgg) result() []Value { return []Value{a.best} }
func (a *extremeAgg) size() int       { return a.best.size() }

type listAgg struct {
	x     evalFn
	set   bool
	limit int64
	items []any
	seen  map[string]struct{}
	buf   []byte
	bytes int
}

func (a *listAgg) add(r Row) {
	if int64(len(a.items)) >= a.limit {
		return
	}
	v := a.x(r)
	if v.IsNull() {
		return
	}
	if a.set {
		a.buf = appendKey(a.buf[:0], v)
		if _, ok := a.seen[string(a.buf)]; ok {
			return
		}
		a.seen[string(a.buf)] = struct{}{}
	}
	a.items = append(a.items, toDynamic(v).D)
	a.bytes += v.size() + len(a.buf)
}
func (a *listAgg) result() []Value {
	items := a.items
	if items == nil {
		items = []any{}
	}
	return []Value{DynamicValue(items)}
}
func (a *listAgg) size() int { return 64 + a.bytes }

type argAgg struct {
	key  evalFn
	sign int
	fns  []evalFn
	best Value
	vals []Value
}

func (a *argAgg) add(r Row) {
	if a.sign == 0 {
		if a.vals != nil {
			return
		}
	} else {
		k := a.key(r)
		if k.IsNull() {
			if a.vals != nil {
				return
			}
		} else if a.vals != nil && !a.best.IsNull() {
			if c, ok := compare(k, a.best); !ok || c*a.sign <= 0 {
				return
			}
		}
		a.best = k
	}
	if a.vals == nil {
		a.vals = make([]Value, len(a.fns))
	}
	for i, f := range a.fns {
		a.vals[i] = f(r)
	}
}

func (a *argAgg) result() []Value {
	if a.vals == nil {
		return make([]Value, len(a.fns))
	}
	return a.vals
}

func (a *argAgg) size() int {
	n := 64
	for _, v := range a.vals {
		n += v.size()
	}
	return n
}

// sortValues sorts dynamic items for stable output where order is not defined.
func sortValues(items []any) {
	sort.SliceStable(items, func(i, j int) bool {
		return sortLess(DynamicValue(items[i]), DynamicValue(items[j])) < 0
	})
}
