package registry_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/registry"
)

// backends runs a behaviour suite against the embedded engine and a standalone nats-server.
func backends(t *testing.T, fn func(t *testing.T, reg *registry.Registry)) {
	t.Helper()
	enginetest.Each(t, func(t *testing.T, eng *engine.Engine) {
		reg, err := registry.New(context.Background(), eng, registry.Config{})
		if err != nil {
			t.Fatal(err)
		}
		fn(t, reg)
	})
}

func wantCode(t *testing.T, err error, code errcode.Code) {
	t.Helper()
	if !errcode.Is(err, code) {
		t.Fatalf("got error %v, want code %d", err, code)
	}
}

func TestRegistryDeviceLifecycle(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, reg *registry.Registry) {
		ctx := context.Background()
		d, err := reg.CreateDevice(ctx, registry.Device{DeviceID: "dev.1"})
		if err != nil {
			t.Fatal(err)
		}
		if d.Status != "enabled" || d.ConnectionState != "Disconnected" || d.Authentication.Type != "sas" {
			t.Fatalf("defaults: %+v", d)
		}
		if k := d.Authentication.SymmetricKey; k == nil || len(k.PrimaryKey) != 44 || len(k.SecondaryKey) != 44 || k.PrimaryKey == k.SecondaryKey {
			t.Fatalf("generated keys: %+v", k)
		}
		if len(d.GenerationID) != 18 {
			t.Fatalf("generationId %q: want 18 digits", d.GenerationID)
		}
		_, err = reg.CreateDevice(ctx, registry.Device{DeviceID: "dev.1"})
		wantCode(t, err, errcode.DeviceAlreadyExists)

		got, err := reg.GetDevice(ctx, "dev.1")
		if err != nil || got.ETag != d.ETag || got.Authentication.SymmetricKey.PrimaryKey != d.Authentication.SymmetricKey.PrimaryKey {
			t.Fatalf("get: %+v, %v", got, err)
		}

		got.Status = "disabled"
		reason := "maintenance"
		got.StatusReason = &reason
		got.Authentication.SymmetricKey = &registry.SymmetricKey{} // empty keys keep the stored ones
		up, err := reg.UpdateDevice(ctx, got, `"`+d.ETag+`"`)
		if err != nil {
			t.Fatal(err)
		}
		if up.Status != "disabled" || up.ETag == d.ETag || up.Authentication.SymmetricKey.PrimaryKey != d.Authentication.SymmetricKey.PrimaryKey {
			t.Fatalf("update: %+v", up)
		}
		_, err = reg.UpdateDevice(ctx, got, `"`+d.ETag+`"`)
		wantCode(t, err, errcode.PreconditionFailed)
		if _, err := reg.UpdateDevice(ctx, got, `"*"`); err != nil {
			t.Fatalf("wildcard update: %v", err)
		}
		wantCode(t, reg.DeleteDevice(ctx, "dev.1", `"`+d.ETag+`"`), errcode.PreconditionFailed)
		if err := reg.DeleteDevice(ctx, "dev.1", "*"); err != nil {
			t.Fatal(err)
		}
		_, err = reg.GetDevice(ctx, "dev.1")
		wantCode(t, err, errcode.DeviceNotFound)
		wantCode(t, reg.DeleteDevice(ctx, "dev.1", ""), errcode.DeviceNotFound)
		_, err = reg.UpdateDevice(ctx, got, "*")
		wantCode(t, err, errcode.DeviceNotFound)

		again, err := reg.CreateDevice(ctx, registry.Device{DeviceID: "dev.1"})
		if err != nil || again.GenerationID == d.GenerationID {
			t.Fatalf("re-create: %+v, %v (generationId must change)", again, err)
		}
	})
}

func TestRegistryRejectsBadInput(t *testing.T) {
	t.Parallel()
	eng := enginetest.Start(t)
	reg, err := registry.New(context.Background(), eng, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	thumb := strings.Repeat("ab", 20)
	short := "abc"
	tests := []struct {
		name string
		dev  registry.Device
		want errcode.Code
	}{
		{"empty id", registry.Device{}, errcode.ArgumentNull},
		{"129 chars", registry.Device{DeviceID: strings.Repeat("a", 129)}, errcode.ArgumentInvalid},
		{"space", registry.Device{DeviceID: "a b"}, errcode.ArgumentInvalid},
		{"slash", registry.Device{DeviceID: "a/b"}, errcode.ArgumentInvalid},
		{"non-ascii", registry.Device{DeviceID: "café"}, errcode.ArgumentInvalid},
		{"bad status", registry.Device{DeviceID: "s", Status: "paused"}, errcode.ArgumentInvalid},
		{"bad key", registry.Device{DeviceID: "k", Authentication: registry.Authentication{Type: "sas", SymmetricKey: &registry.SymmetricKey{PrimaryKey: "not base64!"}}}, errcode.ArgumentInvalid},
		{"short key", registry.Device{DeviceID: "k2", Authentication: registry.Authentication{Type: "sas", SymmetricKey: &registry.SymmetricKey{PrimaryKey: "AAAA"}}}, errcode.ArgumentInvalid},
		{"bad auth type", registry.Device{DeviceID: "t", Authentication: registry.Authentication{Type: "password"}}, errcode.ArgumentInvalid},
		{"selfSigned without thumbprint", registry.Device{DeviceID: "x", Authentication: registry.Authentication{Type: "selfSigned"}}, errcode.ArgumentInvalid},
		{"bad thumbprint", registry.Device{DeviceID: "x2", Authentication: registry.Authentication{Type: "selfSigned", X509Thumbprint: &registry.X509Thumbprint{PrimaryThumbprint: &short}}}, errcode.ArgumentInvalid},
		{"long reason", registry.Device{DeviceID: "r", StatusReason: ptr(strings.Repeat("x", 129))}, errcode.ArgumentInvalid},
		{"sas with thumbprint", registry.Device{DeviceID: "y", Authentication: registry.Authentication{Type: "sas", X509Thumbprint: &registry.X509Thumbprint{PrimaryThumbprint: &thumb}}}, errcode.ArgumentInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := reg.CreateDevice(ctx, tt.dev)
			wantCode(t, err, tt.want)
		})
	}
	devs, err := reg.ListDevices(ctx, 0)
	if err != nil || len(devs) != 0 {
		t.Fatalf("bad input changed the registry: %d devices, %v", len(devs), err)
	}
	ok := []string{"a-b:c.d+e%f_g#h*i?j!k(l)m,n=o@p;q$r's", strings.Repeat("z", 128)}
	for _, id := range ok {
		if _, err := reg.CreateDevice(ctx, registry.Device{DeviceID: id}); err != nil {
			t.Errorf("id %q: %v", id, err)
		}
	}
	d, err := reg.CreateDevice(ctx, registry.Device{DeviceID: "x509", Authentication: registry.Authentication{X509Thumbprint: &registry.X509Thumbprint{PrimaryThumbprint: &thumb}}})
	if err != nil || d.Authentication.Type != "selfSigned" || *d.Authentication.X509Thumbprint.PrimaryThumbprint != strings.ToUpper(thumb) {
		t.Fatalf("selfSigned: %+v %v", d.Authentication, err)
	}
}

func ptr(s string) *string { return &s }

// TestRegistryConcurrentUpdatesLoseNothing has writers race read-modify-write cycles on one
// device with etags; every increment must survive.
func TestRegistryConcurrentUpdatesLoseNothing(t *testing.T) {
	t.Parallel()
	eng := enginetest.Start(t)
	reg, err := registry.New(context.Background(), eng, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := reg.CreateDevice(ctx, registry.Device{DeviceID: "counter", StatusReason: ptr("0")}); err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 10
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; {
				d, err := reg.GetDevice(ctx, "counter")
				if err != nil {
					t.Error(err)
					return
				}
				n, _ := strconv.Atoi(*d.StatusReason)
				d.StatusReason = ptr(strconv.Itoa(n + 1))
				_, err = reg.UpdateDevice(ctx, d, d.ETag)
				if errcode.Is(err, errcode.PreconditionFailed) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				i++
			}
		}()
	}
	wg.Wait()
	d, err := reg.GetDevice(ctx, "counter")
	if err != nil || *d.StatusReason != strconv.Itoa(writers*each) {
		t.Fatalf("counter = %v (%v), want %d", *d.StatusReason, err, writers*each)
	}
}

func TestRegistryModules(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, reg *registry.Registry) {
		ctx := context.Background()
		_, err := reg.CreateModule(ctx, registry.Module{DeviceID: "nodev", ModuleID: "m"})
		wantCode(t, err, errcode.DeviceNotFound)
		if _, err := reg.CreateDevice(ctx, registry.Device{DeviceID: "gw"}); err != nil {
			t.Fatal(err)
		}
		m, err := reg.CreateModule(ctx, registry.Module{DeviceID: "gw", ModuleID: "m.1"})
		if err != nil || m.Authentication.SymmetricKey == nil || m.Authentication.SymmetricKey.PrimaryKey == "" {
			t.Fatalf("create module: %+v %v", m, err)
		}
		_, err = reg.CreateModule(ctx, registry.Module{DeviceID: "gw", ModuleID: "m.1"})
		wantCode(t, err, errcode.ModuleAlreadyExistsOnDevice)
		_, err = reg.GetModule(ctx, "gw", "other")
		wantCode(t, err, errcode.ModuleNotFound)
		if _, err := reg.CreateModule(ctx, registry.Module{DeviceID: "gw", ModuleID: "m2"}); err != nil {
			t.Fatal(err)
		}
		mods, err := reg.ListModules(ctx, "gw")
		if err != nil || len(mods) != 2 {
			t.Fatalf("list modules: %d, %v", len(mods), err)
		}
		_, err = reg.UpdateModule(ctx, m, `"bogus"`)
		wantCode(t, err, errcode.PreconditionFailed)
		up, err := reg.UpdateModule(ctx, m, m.ETag)
		if err != nil || up.ETag == m.ETag {
			t.Fatalf("update module: %+v %v", up, err)
		}
		if err := reg.DeleteDevice(ctx, "gw", ""); err != nil {
			t.Fatal(err)
		}
		if _, err := reg.CreateDevice(ctx, registry.Device{DeviceID: "gw"}); err != nil {
			t.Fatal(err)
		}
		mods, err = reg.ListModules(ctx, "gw")
		if err != nil || len(mods) != 0 {
			t.Fatalf("modules outlived their device: %d, %v", len(mods), err)
		}
	})
}

func TestRegistryBulk(t *testing.T) {
	t.Parallel()
	eng := enginetest.Start(t)
	reg, err := registry.New(context.Background(), eng, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := reg.Bulk(ctx, []registry.ImportDevice{{ID: "b1", ImportMode: "create"}, {ID: "b2", ImportMode: "Create"}})
	if err != nil || !res.IsSuccessful || len(res.Errors) != 0 {
		t.Fatalf("bulk create: %+v %v", res, err)
	}
	res, err = reg.Bulk(ctx, []registry.ImportDevice{{ID: "b1", ImportMode: "create"}, {ID: "b3", ImportMode: "create"}})
	if err != nil || res.IsSuccessful || len(res.Errors) != 1 || res.Errors[0].DeviceID != "b1" || res.Errors[0].ErrorCode != "DeviceAlreadyExists" {
		t.Fatalf("bulk partial failure: %+v %v", res, err)
	}
	if _, err := reg.GetDevice(ctx, "b3"); err != nil {
		t.Fatalf("the good entry of a partly failed bulk must apply: %v", err)
	}
	_, err = reg.Bulk(ctx, []registry.ImportDevice{{ID: "d", ImportMode: "create"}, {ID: "d", ImportMode: "delete"}})
	wantCode(t, err, errcode.DeviceDefinedMultipleTimes)
	many := make([]registry.ImportDevice, 101)
	for i := range many {
		many[i] = registry.ImportDevice{ID: "m" + strconv.Itoa(i), ImportMode: "create"}
	}
	_, err = reg.Bulk(ctx, many)
	wantCode(t, err, errcode.TooManyDevices)
	_, err = reg.Bulk(ctx, []registry.ImportDevice{{ID: "z", ImportMode: "explode"}})
	wantCode(t, err, errcode.ArgumentInvalid)
	b1, _ := reg.GetDevice(ctx, "b1")
	res, err = reg.Bulk(ctx, []registry.ImportDevice{
		{ID: "b1", ImportMode: "UpdateIfMatchETag", ETag: "stale", Status: "disabled"},
		{ID: "b2", ImportMode: "Update", Status: "disabled"},
		{ID: "b3", ImportMode: "Delete"},
		{ID: "b4", ImportMode: "createOrUpdate"},
	})
	if err != nil || len(res.Errors) != 1 || res.Errors[0].ErrorCode != "PreconditionFailed" {
		t.Fatalf("bulk mixed: %+v %v", res, err)
	}
	b1after, _ := reg.GetDevice(ctx, "b1")
	b2, _ := reg.GetDevice(ctx, "b2")
	if b1after.Status != "enabled" || b1after.ETag != b1.ETag || b2.Status != "disabled" {
		t.Fatalf("bulk update results: b1 %s, b2 %s", b1after.Status, b2.Status)
	}
	if b2.Authentication.SymmetricKey == nil || b2.Authentication.SymmetricKey.PrimaryKey == "" {
		t.Fatal("bulk update without authentication must keep the keys")
	}
	st, err := reg.Statistics(ctx)
	if err != nil || st.TotalDeviceCount != 3 || st.DisabledDeviceCount != 1 || st.EnabledDeviceCount != 2 {
		t.Fatalf("statistics: %+v %v", st, err)
	}
}

func TestRegistryRevokesDisabledAndDeletedIdentities(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var calls []string
	reg, err := registry.New(context.Background(), enginetest.Start(t), registry.Config{Revoke: func(dev, mod string, code errcode.Code, _ string) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, dev+"/"+mod+":"+code.String())
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d, _ := reg.CreateDevice(ctx, registry.Device{DeviceID: "r"})
	_, _ = reg.CreateModule(ctx, registry.Module{DeviceID: "r", ModuleID: "m"})
	d.Status = "disabled"
	if _, err := reg.UpdateDevice(ctx, d, "*"); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.UpdateDevice(ctx, d, "*"); err != nil { // still disabled: no second revoke
		t.Fatal(err)
	}
	if err := reg.DeleteDevice(ctx, "r", ""); err != nil {
		t.Fatal(err)
	}
	want := []string{"r/:401002", "r/m:401002", "r/:404001", "r/m:404001"}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(calls, ",") != strings.Join(want, ",") {
		t.Fatalf("revocations %v, want %v", calls, want)
	}
}
