package engine

import (
	"context"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// A device bucket is a key-value bucket with one key per device or module identity whose every
// stored write is also published, by the engine itself, on the identity's [DeviceSubject] of the
// bucket's kind. The node holding a device's connection subscribes to that subject (through a
// [Mailbox]) and so learns of each change in the order it was stored, whichever node wrote it,
// without a consumer per device. A write that fails its compare-and-set is not stored and not
// published; a deletion is published with an empty value.
//
// Keys are the identity's subject without the "roost.dev." prefix, so one subject transform maps
// every key onto its identity's subject:
//
//	key   <device>.<kind>              subject   roost.dev.<device>.<kind>
//	key   <device>.m.<module>.<kind>   subject   roost.dev.<device>.m.<module>.<kind>

// DeviceKV opens a device bucket whose writes are published on DeviceSubject(device, module,
// kind). Open every bucket of the same name with the same kind.
func (e *Engine) DeviceKV(ctx context.Context, cfg BucketConfig, kind string) (*Bucket, error) {
	storage := jetstream.FileStorage
	if cfg.Memory {
		storage = jetstream.MemoryStorage
	}
	kv, err := e.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.Name,
		Description: cfg.Description,
		History:     1,
		TTL:         cfg.TTL,
		Storage:     storage,
		Replicas:    e.cfg.Replicas,
		RePublish: &jetstream.RePublish{
			Source:      "$KV." + cfg.Name + ".>",
			Destination: deviceSubjectPrefix + ">",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("engine: bucket %s: %w", cfg.Name, err)
	}
	return &Bucket{kv: kv, js: e.js}, nil
}

const deviceSubjectPrefix = "roost.dev."

// DeviceKey is the key of an identity in a device bucket of the given kind.
func DeviceKey(deviceID, moduleID, kind string) string {
	return strings.TrimPrefix(DeviceSubject(deviceID, moduleID, kind), deviceSubjectPrefix)
}

// ParseDeviceKey reverses [DeviceKey]; ok is false for a key of another shape or kind.
func ParseDeviceKey(key, kind string) (deviceID, moduleID string, ok bool) {
	rest, found := strings.CutSuffix(key, "."+kind)
	if !found {
		return "", "", false
	}
	parts := strings.Split(rest, ".")
	var err error
	switch {
	case len(parts) == 1:
		deviceID, err = DecodeToken(parts[0])
	case len(parts) == 3 && parts[1] == "m":
		if deviceID, err = DecodeToken(parts[0]); err == nil {
			moduleID, err = DecodeToken(parts[2])
		}
		if err == nil && moduleID == "" {
			return "", "", false
		}
	default:
		return "", "", false
	}
	return deviceID, moduleID, err == nil
}

// DeviceKeyFilters are the [Bucket.Scan] filters that select the device keys (modules false) or
// the module keys (modules true) of a device bucket.
func DeviceKeyFilters(kind string, modules bool) []string {
	if modules {
		return []string{"*.m.*." + kind}
	}
	return []string{"*." + kind}
}
