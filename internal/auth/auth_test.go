package auth_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/auth"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/sas"
)

const host = "hub.test"

func TestPoliciesAreGeneratedOnceAndShared(t *testing.T) {
	t.Parallel()
	ext := enginetest.StartExternal(t)
	ctx := context.Background()
	a, created, err := auth.Open(ctx, ext.Connect(t), auth.Config{HostName: host})
	if err != nil || !created {
		t.Fatalf("first node: created=%v err=%v", created, err)
	}
	b, created, err := auth.Open(ctx, ext.Connect(t), auth.Config{HostName: host})
	if err != nil || created {
		t.Fatalf("second node must reuse the policies: created=%v err=%v", created, err)
	}
	pa, _ := a.Policies(ctx)
	pb, _ := b.Policies(ctx)
	if len(pa) != 5 || pa[0].PrimaryKey != pb[0].PrimaryKey {
		t.Fatalf("nodes disagree on policies: %+v vs %+v", pa, pb)
	}
	for _, p := range pa {
		if !sas.ValidKey(p.PrimaryKey) || !sas.ValidKey(p.SecondaryKey) || p.PrimaryKey == p.SecondaryKey {
			t.Fatalf("policy %s has bad keys", p.KeyName)
		}
	}
}

func TestAuthorizeService(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _, err := auth.Open(ctx, enginetest.Start(t), auth.Config{HostName: host})
	if err != nil {
		t.Fatal(err)
	}
	pol := func(name string) auth.Policy { p, _, _ := st.Policy(ctx, name); return p }
	sign := func(res, key, name string, ttl time.Duration) string {
		tok, err := sas.Sign(res, key, name, time.Now().Add(ttl))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	owner, ro := pol("iothubowner"), pol("registryRead")
	tests := []struct {
		name   string
		header string
		need   auth.Right
		want   errcode.Code
	}{
		{"owner", sign(host, owner.PrimaryKey, "iothubowner", time.Hour), auth.RegistryWrite, 0},
		{"secondary key", sign(host, owner.SecondaryKey, "iothubowner", time.Hour), auth.ServiceConnect, 0},
		{"upper-case host", sign(strings.ToUpper(host), owner.PrimaryKey, "iothubowner", time.Hour), auth.RegistryRead, 0},
		{"read policy reads", sign(host, ro.PrimaryKey, "registryRead", time.Hour), auth.RegistryRead, 0},
		{"read policy writes", sign(host, ro.PrimaryKey, "registryRead", time.Hour), auth.RegistryWrite, errcode.IotHubUnauthorized},
		{"expired", sign(host, owner.PrimaryKey, "iothubowner", -time.Second), auth.RegistryRead, errcode.IotHubUnauthorizedAccess},
		{"wrong key", sign(host, ro.PrimaryKey, "iothubowner", time.Hour), auth.RegistryRead, errcode.IotHubUnauthorized},
		{"unknown policy", sign(host, owner.PrimaryKey, "nobody", time.Hour), auth.RegistryRead, errcode.IotHubUnauthorizedAccess},
		{"other hub", sign("other.test", owner.PrimaryKey, "iothubowner", time.Hour), auth.RegistryRead, errcode.IotHubUnauthorized},
		{"missing", "", auth.RegistryRead, errcode.IotHubUnauthorizedAccess},
		{"bearer", "Bearer abc", auth.RegistryRead, errcode.IotHubUnauthorizedAccess},
		{"garbage", "SharedAccessSignature garbage", auth.RegistryRead, errcode.IotHubUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := st.AuthorizeService(ctx, tt.header, tt.need)
			if tt.want == 0 && err != nil || tt.want != 0 && !errcode.Is(err, tt.want) {
				t.Fatalf("got %v, want code %d", err, tt.want)
			}
		})
	}
}

func TestAuthenticateDevice(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	eng := enginetest.Start(t)
	st, _, err := auth.Open(ctx, eng, auth.Config{HostName: host})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(ctx, eng, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := reg.CreateDevice(ctx, registry.Device{DeviceID: "d1"})
	m, _ := reg.CreateModule(ctx, registry.Module{DeviceID: "d1", ModuleID: "m1"})
	thumb := strings.Repeat("AB", 20)
	_, _ = reg.CreateDevice(ctx, registry.Device{DeviceID: "x1", Authentication: registry.Authentication{Type: "selfSigned", X509Thumbprint: &registry.X509Thumbprint{PrimaryThumbprint: &thumb}}})
	off, _ := reg.CreateDevice(ctx, registry.Device{DeviceID: "off", Status: "disabled"})
	devPol, _, _ := st.Policy(ctx, "device")
	svcPol, _, _ := st.Policy(ctx, "service")
	sign := func(res, key, name string, ttl time.Duration) string {
		tok, _ := sas.Sign(res, key, name, time.Now().Add(ttl))
		return tok
	}
	dk := d.Authentication.SymmetricKey
	tests := []struct {
		name  string
		c     auth.DeviceCredentials
		want  errcode.Code
		scope string
	}{
		{"device key", auth.DeviceCredentials{DeviceID: "d1", Token: sign(sas.DeviceResource(host, "d1", ""), dk.PrimaryKey, "", time.Hour)}, 0, "device"},
		{"device secondary key", auth.DeviceCredentials{DeviceID: "d1", Token: sign(sas.DeviceResource(host, "d1", ""), dk.SecondaryKey, "", time.Hour)}, 0, "device"},
		{"C SDK skn = device id", auth.DeviceCredentials{DeviceID: "d1", Token: sign(sas.DeviceResource(host, "d1", ""), dk.PrimaryKey, "d1", time.Hour)}, 0, "device"},
		{"module key", auth.DeviceCredentials{DeviceID: "d1", ModuleID: "m1", Token: sign(sas.DeviceResource(host, "d1", "m1"), m.Authentication.SymmetricKey.PrimaryKey, "", time.Hour)}, 0, "device"},
		{"device policy for all devices", auth.DeviceCredentials{DeviceID: "d1", Token: sign(host+"/devices", devPol.PrimaryKey, "device", time.Hour)}, 0, "hub"},
		{"service policy lacks DeviceConnect", auth.DeviceCredentials{DeviceID: "d1", Token: sign(host, svcPol.PrimaryKey, "service", time.Hour)}, errcode.IotHubUnauthorized, ""},
		{"device key for module", auth.DeviceCredentials{DeviceID: "d1", ModuleID: "m1", Token: sign(sas.DeviceResource(host, "d1", "m1"), dk.PrimaryKey, "", time.Hour)}, errcode.IotHubUnauthorized, ""},
		{"token for another device", auth.DeviceCredentials{DeviceID: "d1", Token: sign(sas.DeviceResource(host, "d2", ""), dk.PrimaryKey, "", time.Hour)}, errcode.IotHubUnauthorized, ""},
		{"prefix is not a segment", auth.DeviceCredentials{DeviceID: "d1", Token: sign(host+"/devices/d", dk.PrimaryKey, "", time.Hour)}, errcode.IotHubUnauthorized, ""},
		{"expired", auth.DeviceCredentials{DeviceID: "d1", Token: sign(sas.DeviceResource(host, "d1", ""), dk.PrimaryKey, "", -time.Minute)}, errcode.IotHubUnauthorizedAccess, ""},
		{"unknown", auth.DeviceCredentials{DeviceID: "nobody", Token: sign(sas.DeviceResource(host, "nobody", ""), dk.PrimaryKey, "", time.Hour)}, errcode.IotHubUnauthorizedAccess, ""},
		{"disabled", auth.DeviceCredentials{DeviceID: "off", Token: sign(sas.DeviceResource(host, "off", ""), off.Authentication.SymmetricKey.PrimaryKey, "", time.Hour)}, errcode.IotHubUnauthorizedAccess, ""},
		{"x509 match", auth.DeviceCredentials{DeviceID: "x1", Thumbprints: []string{strings.ToLower(thumb)}}, 0, "device"},
		{"x509 mismatch", auth.DeviceCredentials{DeviceID: "x1", Thumbprints: []string{strings.Repeat("CD", 20)}}, errcode.IotHubUnauthorized, ""},
		{"no credentials", auth.DeviceCredentials{DeviceID: "d1"}, errcode.IotHubUnauthorized, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := st.AuthenticateDevice(ctx, reg, tt.c)
			if tt.want != 0 {
				if !errcode.Is(err, tt.want) {
					t.Fatalf("got %v, want code %d", err, tt.want)
				}
				return
			}
			if err != nil || id.Scope != tt.scope {
				t.Fatalf("got %+v, %v; want scope %s", id, err, tt.scope)
			}
		})
	}
}
