package mqtt

import (
	"net/url"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/telemetry"
)

// Topic kinds a device may publish to.
const (
	topicUnknown = iota
	topicTelemetry
	topicTwinGet
	topicTwinPatchReported
	topicMethodResponse
)

// parsedTopic is a device PUBLISH topic taken apart.
type parsedTopic struct {
	kind     int
	deviceID string
	moduleID string
	bag      string // property bag (telemetry) or query (twin, methods), undecoded
	status   string // method response status
	rid      string // request id of twin and method topics
}

// parsePublishTopic recognises the topics of IoT Hub's MQTT surface (spec/device-protocol.md
// section 4):
//
//	devices/{d}/messages/events/{bag}
//	devices/{d}/modules/{m}/messages/events/{bag}
//	$iothub/twin/GET/?$rid={rid}
//	$iothub/twin/PATCH/properties/reported/?$rid={rid}
//	$iothub/methods/res/{status}/?$rid={rid}
//
// Ids in the topic are compared raw: the SDKs do not encode them.
func parsePublishTopic(topic string) parsedTopic {
	if rest, ok := strings.CutPrefix(topic, "devices/"); ok {
		dev, rest, ok := strings.Cut(rest, "/")
		if !ok || dev == "" {
			return parsedTopic{}
		}
		p := parsedTopic{deviceID: dev}
		if r, ok := strings.CutPrefix(rest, "modules/"); ok {
			mod, r2, ok := strings.Cut(r, "/")
			if !ok || mod == "" {
				return parsedTopic{}
			}
			p.moduleID, rest = mod, r2
		}
		bag, ok := strings.CutPrefix(rest, "messages/events")
		if !ok {
			return parsedTopic{}
		}
		if bag != "" {
			if bag[0] != '/' {
				return parsedTopic{}
			}
			bag = bag[1:]
		}
		p.kind, p.bag = topicTelemetry, bag
		return p
	}
	if rest, ok := strings.CutPrefix(topic, "$iothub/"); ok {
		var p parsedTopic
		switch {
		case strings.HasPrefix(rest, "twin/GET/"):
			p.kind, p.bag = topicTwinGet, rest[len("twin/GET/"):]
		case strings.HasPrefix(rest, "twin/PATCH/properties/reported/"):
			p.kind, p.bag = topicTwinPatchReported, rest[len("twin/PATCH/properties/reported/"):]
		case strings.HasPrefix(rest, "methods/res/"):
			status, q, ok := strings.Cut(rest[len("methods/res/"):], "/")
			if !ok || status == "" {
				return parsedTopic{}
			}
			p.kind, p.status, p.bag = topicMethodResponse, status, q
		default:
			return parsedTopic{}
		}
		q, _ := url.ParseQuery(strings.TrimPrefix(p.bag, "?"))
		p.rid = q.Get("$rid")
		return p
	}
	return parsedTopic{}
}

// allowedFilter reports whether a device or module may subscribe to filter. The hub allows only
// its documented filters (spec/device-protocol.md section 4) for the connection's own identity.
func allowedFilter(filter, deviceID, moduleID string) bool {
	switch filter {
	case "$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#", "$iothub/methods/POST/#":
		return true
	}
	if moduleID == "" {
		return filter == "devices/"+deviceID+"/messages/devicebound/#"
	}
	base := "devices/" + deviceID + "/modules/" + moduleID + "/"
	return filter == base+"#" || filter == base+"inputs/#"
}

// parseBag decodes a telemetry property bag into msg: "$.mid=1&$.ct=application%2Fjson&k=v".
// Keys and values are percent-decoded ('+' stays '+'); system keys may be written "$." or "%24.".
// A key without '=' gets an empty value.
func parseBag(bag string, msg *telemetry.Message) error {
	bag = strings.TrimPrefix(bag, "?")
	bag = strings.TrimSuffix(bag, "/")
	for bag != "" {
		var part string
		part, bag, _ = strings.Cut(bag, "&")
		if part == "" {
			continue
		}
		rawK, rawV, _ := strings.Cut(part, "=")
		k, err := url.PathUnescape(rawK)
		if err != nil {
			return err
		}
		v, err := url.PathUnescape(rawV)
		if err != nil {
			return err
		}
		if !setSystemProperty(msg, k, v) {
			msg.Properties = append(msg.Properties, telemetry.Property{Name: k, Value: v})
		}
	}
	return nil
}

// setSystemProperty stores a "$." key; it returns false for application properties.
func setSystemProperty(msg *telemetry.Message, k, v string) bool {
	name, ok := strings.CutPrefix(k, "$.")
	if !ok {
		return false
	}
	switch name {
	case "mid":
		msg.MessageID = v
	case "cid":
		msg.CorrelationID = v
	case "uid":
		msg.UserID = v
	case "to":
		msg.To = v
	case "ct":
		msg.ContentType = v
	case "ce":
		msg.ContentEncoding = v
	case "on":
		msg.OutputName = v
	case "ifid":
		msg.InterfaceID = v
	case "sub":
		msg.ComponentName = v
	case "schema":
		msg.MessageSchema = v
	case "exp":
		msg.Expiry = parseTime(v)
	case "ctime":
		msg.CreationTime = parseTime(v)
	default:
		// Unknown system keys ($.diagid, $.diagctx, ...) travel as application properties under
		// their full name, so nothing the device sent is lost.
		return false
	}
	return true
}

func parseTime(s string) time.Time {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.9999999", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

// parseClientID splits "device" or "device/module".
func parseClientID(id string) (deviceID, moduleID string, ok bool) {
	dev, mod, hasMod := strings.Cut(id, "/")
	if dev == "" || hasMod && (mod == "" || strings.Contains(mod, "/")) {
		return "", "", false
	}
	return dev, mod, true
}

// parseUsername checks "{host}/{clientId}/?{query}" and returns the query's values (api-version,
// DeviceClientType, model-id). The host compares case-insensitively; the query may be empty.
func parseUsername(username, host, clientID string) (url.Values, bool) {
	if len(username) < len(host)+1 || !strings.EqualFold(username[:len(host)], host) || username[len(host)] != '/' {
		return nil, false
	}
	rest, ok := strings.CutPrefix(username[len(host)+1:], clientID)
	if !ok {
		return nil, false
	}
	if rest == "" || rest == "/" {
		return url.Values{}, true
	}
	q, ok := strings.CutPrefix(rest, "/")
	if !ok {
		return nil, false
	}
	q = strings.TrimPrefix(q, "?")
	vals := url.Values{}
	for q != "" {
		var part string
		part, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(part, "=")
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if dv, err := url.PathUnescape(v); err == nil {
			v = dv
		}
		vals.Add(k, v)
	}
	return vals, true
}
