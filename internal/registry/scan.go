package registry

import (
	"context"
	"encoding/json"

	"github.com/roost-iot/roost/internal/engine"
)

// EachDevice calls fn with every registered device, with its connection state, until fn returns
// false. Unlike [Registry.ListDevices] it has no limit; it reads the whole registry.
func (r *Registry) EachDevice(ctx context.Context, fn func(Device) bool) error {
	states, err := r.allStates(ctx, "d.*")
	if err != nil {
		return storeErr(err, "scan connection states")
	}
	var decodeErr error
	err = r.ids.Scan(ctx, []string{"d.*"}, func(e engine.Entry) bool {
		var st storedDevice
		if err := json.Unmarshal(e.Value, &st); err != nil {
			decodeErr = err
			return false
		}
		return fn(st.device(e.Revision, states[e.Key]))
	})
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		return storeErr(err, "scan devices")
	}
	return nil
}

// EachModule calls fn with every module of every device, with its connection state, until fn
// returns false.
func (r *Registry) EachModule(ctx context.Context, fn func(Module) bool) error {
	states, err := r.allStates(ctx, "m.*.*")
	if err != nil {
		return storeErr(err, "scan connection states")
	}
	var decodeErr error
	err = r.ids.Scan(ctx, []string{"m.*.*"}, func(e engine.Entry) bool {
		var st storedModule
		if err := json.Unmarshal(e.Value, &st); err != nil {
			decodeErr = err
			return false
		}
		return fn(st.module(e.Revision, states[e.Key]))
	})
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		return storeErr(err, "scan modules")
	}
	return nil
}

// allStates reads the connection state of every identity matching filter in one pass, so scans
// need no round trip per identity.
func (r *Registry) allStates(ctx context.Context, filter string) (map[string]connState, error) {
	out := map[string]connState{}
	err := r.state.Scan(ctx, []string{filter}, func(e engine.Entry) bool {
		var cs connState
		if json.Unmarshal(e.Value, &cs) == nil {
			out[e.Key] = cs
		}
		return true
	})
	return out, err
}
