package query

import (
	"container/heap"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/roost-iot/roost/internal/errcode"
)

// Source calls fn with every twin document of the hub, device twins or (modules set) module
// twins, in any order, until fn returns false or ctx ends. A document is a twin as the service
// API returns it, decoded by encoding/json; fn may keep it, so the source must not change it
// afterwards. Every error returned should be an [*errcode.Error]. A query FROM devices.jobs
// reads a source of job rows instead (see [Query.From]), called with modules false.
type Source func(ctx context.Context, modules bool, fn func(doc map[string]any) bool) error

// Page sizes. IoT Hub's documentation gives 100 as the usual page and 1000 as the most the
// service returns; a larger x-ms-max-item-count is served as 1000.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// Request is one page request of a query, as the REST API carries it.
type Request struct {
	// Query is the query text.
	Query string
	// PageSize is the most items to return. Zero means [DefaultPageSize]; more than
	// [MaxPageSize] means MaxPageSize.
	PageSize int
	// Continuation is the token of the previous page, empty for the first.
	Continuation string
}

// Page is one page of results.
type Page struct {
	// Items are twin documents (SELECT *) or projected rows. Never nil.
	Items []any
	// ItemType is the x-ms-item-type header value: twin, raw or deviceJob.
	ItemType string
	// Continuation is the token for the next page, empty on the last page.
	Continuation string
}

// Run parses req.Query and returns the requested page of its results.
func Run(ctx context.Context, src Source, req Request) (Page, error) {
	q, err := Parse(req.Query)
	if err != nil {
		return Page{}, err
	}
	return q.Page(ctx, src, req.PageSize, req.Continuation)
}

// cursor is what a continuation token carries: everything the next page needs, so that any
// node of a cluster can serve it and none keeps state between pages.
type cursor struct {
	// Q ties the token to its query text.
	Q string `json:"q"`
	// K is the sort key of the last item sent: deviceId and moduleId (jobId for devices.jobs),
	// or the group's key.
	K []string `json:"k"`
	// N is how many items were sent before, for TOP.
	N int `json:"n"`
}

const tokenPrefix = "r1."

// maxTokenLength bounds a continuation token: keys are at most a few KB.
const maxTokenLength = 32 << 10

func fingerprint(text string) string {
	h := sha256.Sum256([]byte(text))
	return hex.EncodeToString(h[:8])
}

func (c cursor) encode() string {
	b, _ := json.Marshal(c)
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(tok, text string) (*cursor, error) {
	if tok == "" {
		return nil, nil
	}
	bad := invalidf("The continuation token is not valid: pass the x-ms-continuation value of the previous page unchanged")
	if len(tok) > maxTokenLength || !strings.HasPrefix(tok, tokenPrefix) {
		return nil, bad
	}
	b, err := base64.RawURLEncoding.DecodeString(tok[len(tokenPrefix):])
	if err != nil {
		return nil, bad
	}
	var c cursor
	if json.Unmarshal(b, &c) != nil || c.N < 0 || len(c.K) == 0 || len(c.K) > 2 {
		return nil, bad
	}
	if c.Q != fingerprint(text) {
		return nil, invalidf("The continuation token belongs to another query: send the same query text with it")
	}
	return &c, nil
}

// Page returns one page of the query's results. Results are ordered by deviceId and moduleId
// (groups by their key), so a page starts right after the last item of the previous one; items
// added or removed between pages are seen or not, as the query's moment of reading finds them.
func (q *Query) Page(ctx context.Context, src Source, pageSize int, continuation string) (Page, error) {
	if pageSize <= 0 {
		pageSize = DefaultPageSize
	}
	pageSize = min(pageSize, MaxPageSize)
	cur, err := decodeCursor(continuation, q.text)
	if err != nil {
		return Page{}, err
	}
	sent := 0
	if cur != nil {
		sent = cur.N
	}
	limit := pageSize
	if q.top >= 0 {
		limit = min(limit, q.top-sent)
	}
	out := Page{Items: []any{}, ItemType: q.ItemType()}
	if limit <= 0 {
		return out, nil
	}
	var after []string
	if cur != nil {
		after = cur.K
	}
	var (
		items []any
		keys  [][]string
		more  bool
	)
	if q.agg {
		items, keys, more, err = q.groups(ctx, src, limit, after)
	} else {
		items, keys, more, err = q.docs(ctx, src, limit, after)
	}
	if err != nil {
		return Page{}, err
	}
	out.Items = items
	if more && (q.top < 0 || sent+len(items) < q.top) {
		out.Continuation = cursor{Q: fingerprint(q.text), K: keys[len(keys)-1], N: sent + len(items)}.encode()
	}
	return out, nil
}

// scan runs the source, stopping when ctx ends, and keeps documents that satisfy WHERE.
func (q *Query) scan(ctx context.Context, src Source, fn func(doc map[string]any)) error {
	n := 0
	var ctxErr error
	err := src(ctx, q.from == Modules, func(doc map[string]any) bool {
		if n++; n&1023 == 0 {
			if ctxErr = ctx.Err(); ctxErr != nil {
				return false
			}
		}
		// A devices.jobs row is a document with a jobId; a twin has none. Sources serve one kind,
		// but a query never mixes them even if one serves both.
		if _, isRow := doc["jobId"].(string); isRow != (q.from == Jobs) {
			return true
		}
		if q.where == nil || truthy(q.where.eval(doc)) {
			fn(doc)
		}
		return true
	})
	if err == nil {
		err = ctxErr
	}
	if err == nil {
		return nil
	}
	if e := (*errcode.Error)(nil); errors.As(err, &e) {
		return e
	}
	if ctx.Err() != nil {
		return errcode.Wrap(errcode.RequestCanceled, err, "the query was canceled")
	}
	return errcode.Wrap(errcode.ServerError, err, "could not read the twins")
}

// docKey is a document's place in the result order: deviceId and moduleId for twins, deviceId
// and jobId for devices.jobs rows (a device has one row per job).
func (q *Query) docKey(doc map[string]any) [2]string {
	second := "moduleId"
	if q.from == Jobs {
		second = "jobId"
	}
	d, _ := doc["deviceId"].(string)
	m, _ := doc[second].(string)
	return [2]string{d, m}
}

func lessKey(a, b [2]string) bool {
	if a[0] != b[0] {
		return a[0] < b[0]
	}
	return a[1] < b[1]
}

// docs answers a query without aggregates: the first limit matching documents after the
// cursor, projected. more says whether any matching document follows them.
func (q *Query) docs(ctx context.Context, src Source, limit int, after []string) (items []any, keys [][]string, more bool, err error) {
	var from [2]string
	hasFrom := after != nil
	if hasFrom {
		from[0] = after[0]
		if len(after) > 1 {
			from[1] = after[1]
		}
	}
	best := &docHeap{}
	err = q.scan(ctx, src, func(doc map[string]any) {
		k := q.docKey(doc)
		if hasFrom && !lessKey(from, k) {
			return
		}
		if best.Len() <= limit {
			heap.Push(best, keyedDoc{k, doc})
			return
		}
		if lessKey(k, (*best)[0].key) { // smaller than the largest kept: replace it
			(*best)[0] = keyedDoc{k, doc}
			heap.Fix(best, 0)
		}
	})
	if err != nil {
		return nil, nil, false, err
	}
	rows := []keyedDoc(*best)
	slices.SortFunc(rows, func(a, b keyedDoc) int {
		if lessKey(a.key, b.key) {
			return -1
		}
		if lessKey(b.key, a.key) {
			return 1
		}
		return 0
	})
	if len(rows) > limit {
		rows, more = rows[:limit], true
	}
	items = make([]any, 0, len(rows))
	keys = make([][]string, 0, len(rows))
	for _, r := range rows {
		items = append(items, q.project(r.doc))
		keys = append(keys, []string{r.key[0], r.key[1]})
	}
	return items, keys, more, nil
}

// project builds a result item from a document: the document itself for SELECT *, else an
// object of the SELECT items, leaving out those that are undefined.
func (q *Query) project(doc map[string]any) any {
	if q.star {
		return doc
	}
	row := make(map[string]any, len(q.items))
	for _, it := range q.items {
		if v := it.expr.eval(doc); !isUndefined(v) {
			row[it.name] = v
		}
	}
	return row
}

type keyedDoc struct {
	key [2]string
	doc map[string]any
}

// docHeap keeps the smallest keys seen, largest on top.
type docHeap []keyedDoc

func (h docHeap) Len() int           { return len(h) }
func (h docHeap) Less(i, j int) bool { return lessKey(h[j].key, h[i].key) }
func (h docHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *docHeap) Push(x any)        { *h = append(*h, x.(keyedDoc)) }
func (h *docHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

type group struct {
	key  string
	vals []any // the GROUP BY values
	accs []acc // one per SELECT item (unused for grouped properties)
}

// groups answers an aggregate query: one row per group (a single row without GROUP BY), in
// the order of the groups' keys.
func (q *Query) groups(ctx context.Context, src Source, limit int, after []string) (items []any, keys [][]string, more bool, err error) {
	byKey := map[string]*group{}
	var kb []byte
	vals := make([]any, len(q.groupBy))
	err = q.scan(ctx, src, func(doc map[string]any) {
		kb = kb[:0]
		for i, g := range q.groupBy {
			// Groups are of primitive values: a twin whose property is an object or an array
			// joins those without the property, so that no group holds a copy of a document.
			if vals[i] = g.eval(doc); !isPrimitive(vals[i]) {
				vals[i] = undefined
			}
			kb = append(appendKey(kb, vals[i]), 0)
		}
		g := byKey[string(kb)]
		if g == nil {
			g = &group{key: string(kb), vals: slices.Clone(vals), accs: make([]acc, len(q.items))}
			byKey[g.key] = g
		}
		for i := range q.items {
			if a := q.items[i].agg; a != nil {
				g.accs[i].add(a, doc)
			}
		}
	})
	if err != nil {
		return nil, nil, false, err
	}
	if len(q.groupBy) == 0 && len(byKey) == 0 { // COUNT() over nothing is one row of 0
		byKey[""] = &group{accs: make([]acc, len(q.items))}
	}
	all := make([]*group, 0, len(byKey))
	for _, g := range byKey {
		if after == nil || g.key > after[0] {
			all = append(all, g)
		}
	}
	slices.SortFunc(all, func(a, b *group) int { return strings.Compare(a.key, b.key) })
	if len(all) > limit {
		all, more = all[:limit], true
	}
	// Which GROUP BY value each grouped SELECT item shows.
	groupIdx := make([]int, len(q.items))
	for i, it := range q.items {
		groupIdx[i] = -1
		if pe, ok := it.expr.(*pathExpr); ok {
			for j, g := range q.groupBy {
				if strings.EqualFold(g.String(), pe.String()) {
					groupIdx[i] = j
					break
				}
			}
		}
	}
	items = make([]any, 0, len(all))
	keys = make([][]string, 0, len(all))
	for _, g := range all {
		row := make(map[string]any, len(q.items))
		for i, it := range q.items {
			var v any
			if it.agg != nil {
				v = g.accs[i].result(it.agg)
			} else {
				v = g.vals[groupIdx[i]]
			}
			if !isUndefined(v) {
				row[it.name] = v
			}
		}
		items = append(items, row)
		keys = append(keys, []string{g.key})
	}
	return items, keys, more, nil
}
