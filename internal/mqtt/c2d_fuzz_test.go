package mqtt

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/c2d"
)

// FuzzMQTTC2DTopic builds delivery topics from arbitrary properties (they come from the service
// side, untrusted) and parses them back as the SDKs do: the topic never holds '?', has exactly
// five '/'-segments, every key has a value, and every key and value decodes to what was sent.
func FuzzMQTTC2DTopic(f *testing.F) {
	f.Add("m-1", "k", "v", "c/1&x=y", "application/json")
	f.Add("", "a=b", "%&/?#+ ", "", "")
	f.Add("id", "é", "\x00\xff", "=", "&")
	f.Fuzz(func(t *testing.T, id, name, value, corr, ct string) {
		d := &c2d.Delivery{Message: &c2d.Message{
			MessageID: id, CorrelationID: corr, ContentType: ct, To: "/devices/dev/messages/deviceBound",
			Properties: []c2d.Property{{Name: name, Value: value}}, Ack: c2d.AckFull,
			Expiry: time.Unix(1_700_000_000, 0), ExpirySet: true,
		}}
		topic := c2dTopic("dev", d)
		if strings.Contains(topic, "?") {
			t.Fatalf("'?' in %q", topic)
		}
		parts := strings.Split(topic, "/")
		if len(parts) != 5 || parts[0] != "devices" || parts[1] != "dev" || parts[4] == "" {
			t.Fatalf("shape of %q", topic)
		}
		got := map[string][]string{}
		for _, kv := range strings.Split(parts[4], "&") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				t.Fatalf("key without value in %q", topic)
			}
			dk, err1 := url.PathUnescape(k)
			dv, err2 := url.PathUnescape(v)
			if err1 != nil || err2 != nil {
				t.Fatalf("undecodable %q", kv)
			}
			got[dk] = append(got[dk], dv)
		}
		if got["$.mid"][0] != id || got["$.to"][0] != d.To || got["iothub-ack"][0] != "full" {
			t.Fatalf("system properties of %q: %v", topic, got)
		}
		if corr != "" && got["$.cid"][0] != corr || ct != "" && got["$.ct"][0] != ct {
			t.Fatalf("system properties of %q: %v", topic, got)
		}
		if vals := got[name]; len(vals) == 0 || vals[0] != value {
			t.Fatalf("property %q=%q lost in %q: %v", name, value, topic, got)
		}
	})
}
