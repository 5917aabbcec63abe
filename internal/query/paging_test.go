package query_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/query"
)

func devices(n int) []map[string]any {
	docs := make([]map[string]any, 0, n)
	for i := n - 1; i >= 0; i-- { // the source's order is not the result order
		docs = append(docs, map[string]any{
			"deviceId": fmt.Sprintf("dev-%03d", i),
			"status":   "enabled",
			"tags":     map[string]any{"rack": float64(i % 4)},
		})
	}
	return docs
}

func page(t *testing.T, src query.Source, text string, size int, token string) query.Page {
	t.Helper()
	p, err := query.Run(context.Background(), src, query.Request{Query: text, PageSize: size, Continuation: token})
	if err != nil {
		t.Fatalf("%s (page size %d): %v", text, size, err)
	}
	return p
}

// TestQueryPaging checks what the SDKs rely on: a continuation token while more items follow
// and none on the last page (Node's Query sets hasMoreResults from the header's presence), the
// same item type on every page, and no item twice or missing.
func TestQueryPaging(t *testing.T) {
	t.Parallel()
	src := memSource(devices(25))
	tests := []struct {
		query string
		size  int
		pages []int
		typ   string
	}{
		{"SELECT * FROM devices", 10, []int{10, 10, 5}, query.ItemTwin},
		{"SELECT * FROM devices WHERE tags.rack < 4", 5, []int{5, 5, 5, 5, 5}, query.ItemTwin},
		{"SELECT deviceId FROM devices", 25, []int{25}, query.ItemRaw},
		{"SELECT deviceId FROM devices", 24, []int{24, 1}, query.ItemRaw},
		{"SELECT * FROM devices", 0, []int{25}, query.ItemTwin}, // 0: the default, 100
		{"SELECT TOP 15 * FROM devices", 10, []int{10, 5}, query.ItemTwin},
		{"SELECT TOP 20 * FROM devices", 10, []int{10, 10}, query.ItemTwin},
		{"SELECT TOP 3 * FROM devices", 10, []int{3}, query.ItemTwin},
		{"SELECT * FROM devices WHERE tags.rack = 9", 10, []int{0}, query.ItemTwin},
		{"SELECT tags.rack AS rack, COUNT() AS n FROM devices GROUP BY tags.rack", 3, []int{3, 1}, query.ItemRaw},
		{"SELECT COUNT() AS n FROM devices", 1, []int{1}, query.ItemRaw},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%d", tc.query, tc.size), func(t *testing.T) {
			t.Parallel()
			var (
				sizes []int
				seen  = map[string]bool{}
				token string
				last  string
			)
			for {
				p := page(t, src, tc.query, tc.size, token)
				if p.ItemType != tc.typ {
					t.Fatalf("item type %s, want %s", p.ItemType, tc.typ)
				}
				sizes = append(sizes, len(p.Items))
				for _, it := range p.Items {
					k := fmt.Sprint(it)
					if seen[k] {
						t.Fatalf("item %s on two pages", k)
					}
					seen[k] = true
					if id, ok := it.(map[string]any)["deviceId"].(string); ok {
						if id <= last {
							t.Fatalf("%s after %s: not in deviceId order", id, last)
						}
						last = id
					}
				}
				if p.Continuation == "" {
					break
				}
				if len(sizes) > 10 {
					t.Fatal("too many pages")
				}
				token = p.Continuation
			}
			if fmt.Sprint(sizes) != fmt.Sprint(tc.pages) {
				t.Fatalf("page sizes %v, want %v", sizes, tc.pages)
			}
		})
	}
}

// TestQueryPagingIsStateless checks that a continuation token carries all the next page needs:
// it works twice, on a source that holds the same twins in another order (another node), and
// a twin added before the cursor between pages is not sent while none is sent twice.
func TestQueryPagingIsStateless(t *testing.T) {
	t.Parallel()
	docs := devices(30)
	const q = "SELECT * FROM devices WHERE tags.rack != 1"
	first := page(t, memSource(docs), q, 10, "")
	if first.Continuation == "" || ids(first.Items) != "dev-000 dev-002 dev-003 dev-004 dev-006 dev-007 dev-008 dev-010 dev-011 dev-012" {
		t.Fatalf("first page %q, token %q", ids(first.Items), first.Continuation)
	}
	reversed := make([]map[string]any, len(docs))
	for i, d := range docs {
		reversed[len(docs)-1-i] = d
	}
	a := page(t, memSource(docs), q, 10, first.Continuation)
	b := page(t, memSource(reversed), q, 10, first.Continuation)
	if ids(a.Items) != ids(b.Items) || a.Continuation != b.Continuation {
		t.Fatalf("same token, different answers: %q / %q", ids(a.Items), ids(b.Items))
	}
	if ids(a.Items) != "dev-014 dev-015 dev-016 dev-018 dev-019 dev-020 dev-022 dev-023 dev-024 dev-026" {
		t.Fatalf("second page %q", ids(a.Items))
	}
	grown := append([]map[string]any{{"deviceId": "dev-001a", "tags": map[string]any{"rack": 0.0}}, {"deviceId": "dev-999", "tags": map[string]any{"rack": 0.0}}}, docs...)
	c := page(t, memSource(grown), q, 10, a.Continuation)
	if ids(c.Items) != "dev-027 dev-028 dev-999" || c.Continuation != "" {
		t.Fatalf("last page %q (token %q)", ids(c.Items), c.Continuation)
	}
}

// TestQueryBadContinuation checks that a token that was not issued for the query is refused
// with 400004, and that page sizes are clamped.
func TestQueryBadContinuation(t *testing.T) {
	t.Parallel()
	src := memSource(devices(5))
	p := page(t, src, "SELECT * FROM devices", 2, "")
	for _, tc := range []struct{ query, token, msg string }{
		{"SELECT * FROM devices", "garbage", "The continuation token is not valid"},
		{"SELECT * FROM devices", "r1.!!!", "The continuation token is not valid"},
		{"SELECT * FROM devices", "r1." + base64.RawURLEncoding.EncodeToString([]byte(`{"q":"x","k":[]}`)), "The continuation token is not valid"},
		{"SELECT * FROM devices", "r1." + base64.RawURLEncoding.EncodeToString([]byte(`[1,2]`)), "The continuation token is not valid"},
		{"SELECT * FROM devices", strings.Repeat("r1.A", 20000), "The continuation token is not valid"},
		{"SELECT deviceId FROM devices", p.Continuation, "The continuation token belongs to another query"},
	} {
		_, err := query.Run(context.Background(), src, query.Request{Query: tc.query, Continuation: tc.token})
		e := errcode.As(err)
		if err == nil || e.Code != errcode.ArgumentInvalid || !strings.Contains(e.Msg, tc.msg) {
			t.Errorf("token %.30q: got %v, want 400004 %q", tc.token, err, tc.msg)
		}
	}
	big := page(t, memSource(devices(1500)), "SELECT deviceId FROM devices", 5000, "")
	if len(big.Items) != query.MaxPageSize || big.Continuation == "" {
		t.Fatalf("page size 5000 gave %d items, want %d and a token", len(big.Items), query.MaxPageSize)
	}
}

// TestQuerySourceErrors checks that a failing source and a cancelled request end the query
// with an IoT Hub error.
func TestQuerySourceErrors(t *testing.T) {
	t.Parallel()
	failing := func(ctx context.Context, modules bool, fn func(map[string]any) bool) error {
		return fmt.Errorf("engine down")
	}
	_, err := query.Run(context.Background(), failing, query.Request{Query: "SELECT * FROM devices"})
	if errcode.As(err).Code != errcode.ServerError {
		t.Fatalf("failing source: %v, want 500001", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = query.Run(ctx, memSource(devices(3000)), query.Request{Query: "SELECT * FROM devices"})
	if errcode.As(err).Code != errcode.RequestCanceled {
		t.Fatalf("cancelled: %v, want 400021", err)
	}
}
