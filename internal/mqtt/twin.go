package mqtt

import (
	"encoding/json"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
)

// onTwin answers a twin GET or reported-properties PATCH.
//
// Device twins come with their own issue; until then the hub answers at once with 503 so the
// SDKs fail fast instead of timing out.
func (c *conn) onTwin(t parsedTopic, _ publish) error {
	body, _ := json.Marshal(map[string]any{"errorCode": int(errcode.ServiceUnavailable), "message": "device twins are not available on this hub yet"})
	return c.enqueue(outItem{data: appendPublish(nil, "$iothub/twin/res/503/?$rid="+t.rid, 0, 0, body)})
}

// startDesired begins pushing desired-property patches to the device.
func (c *conn) startDesired() error { return nil }

// onDesired delivers a desired-property patch published for this identity.
func (c *conn) onDesired(engine.Inbound) {}
