package mqtt

import (
	"strings"
	"testing"

	"github.com/roost-iot/roost/internal/errcode"
)

func TestTwinRID(t *testing.T) {
	for _, tc := range []struct {
		query, rid string
		ok         bool
	}{
		{"?$rid=1", "1", true},
		{"?$rid=6d1b2a3c-0000-4000-8000-000000000001", "6d1b2a3c-0000-4000-8000-000000000001", true},
		{"?$version=3&$rid=ab", "ab", true},
		{"?$rid=a%20b", "a%20b", true}, // echoed as written
		{"/?$rid=7", "7", true},
		{"", "", false},
		{"?$rid=", "", false},
		{"?rid=1", "", false},
		{"?$rid=a+b", "", false},
		{"?$rid=a#", "", false},
		{"?$rid=a/b", "", false},
	} {
		rid, err := twinRID(tc.query)
		if (err == nil) != tc.ok || rid != tc.rid {
			t.Errorf("twinRID(%q) = %q, %v; want %q ok=%v", tc.query, rid, err, tc.rid, tc.ok)
		}
		if err != nil && !errcode.Is(err, errcode.ArgumentInvalid) {
			t.Errorf("twinRID(%q): error %v is not 400004", tc.query, err)
		}
	}
}

// FuzzTwinTopic checks that any twin request topic a device sends either yields a request id
// that fits in the answer's topic or a 400004, never a panic.
func FuzzTwinTopic(f *testing.F) {
	for _, s := range []string{"$iothub/twin/GET/?$rid=1", "$iothub/twin/PATCH/properties/reported/?$rid=2&x", "$iothub/twin/GET/", "$iothub/twin/GET/?$rid=+"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		p := parsePublishTopic(topic)
		if p.kind != topicTwinGet && p.kind != topicTwinPatchReported {
			return
		}
		rid, err := twinRID(p.bag)
		if err != nil {
			if !errcode.Is(err, errcode.ArgumentInvalid) {
				t.Fatalf("error %v", err)
			}
			return
		}
		if rid == "" || strings.ContainsAny(rid, "+#/&\x00") {
			t.Fatalf("rid %q cannot go into a topic", rid)
		}
	})
}
