// Package auth holds the hub's shared access policies and decides whether a SAS token may do
// what a request asks.
//
// On first start [Open] generates IoT Hub's five default policies (iothubowner, service, device,
// registryRead, registryReadWrite) with random 256-bit keys and stores them in the engine, so
// every node of a cluster checks tokens against the same keys.
//
//	pols, err := auth.Open(ctx, eng, auth.Config{HostName: "myhub.local"})
//	pol, err := pols.AuthorizeService(ctx, r.Header.Get("Authorization"), auth.RegistryRead)
//
// Failures are [*errcode.Error] values with the codes spec/decisions.md settles: an expired token
// or unknown policy is 401002, a bad signature, wrong resource or missing permission is 401003.
package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/sas"
)

// Right is a permission a policy grants.
type Right string

// The rights of IoT Hub's shared access policies.
const (
	RegistryRead   Right = "RegistryRead"
	RegistryWrite  Right = "RegistryWrite"
	ServiceConnect Right = "ServiceConnect"
	DeviceConnect  Right = "DeviceConnect"
)

// Policy is a shared access policy: a name, two keys and the rights they grant.
type Policy struct {
	KeyName      string  `json:"keyName"`
	PrimaryKey   string  `json:"primaryKey"`
	SecondaryKey string  `json:"secondaryKey"`
	Rights       []Right `json:"rights"`
}

// Has reports whether the policy grants r. RegistryWrite implies RegistryRead, as in IoT Hub.
func (p Policy) Has(r Right) bool {
	for _, have := range p.Rights {
		if have == r || r == RegistryRead && have == RegistryWrite {
			return true
		}
	}
	return false
}

// DefaultPolicies lists the policies a new hub starts with, without keys.
func DefaultPolicies() []Policy {
	return []Policy{
		{KeyName: "iothubowner", Rights: []Right{RegistryWrite, ServiceConnect, DeviceConnect}},
		{KeyName: "service", Rights: []Right{ServiceConnect}},
		{KeyName: "device", Rights: []Right{DeviceConnect}},
		{KeyName: "registryRead", Rights: []Right{RegistryRead}},
		{KeyName: "registryReadWrite", Rights: []Right{RegistryWrite}},
	}
}

// Config configures the policy store.
type Config struct {
	// HostName is the hub's name; service tokens must be scoped to it.
	HostName string
	// Refresh is how long a node trusts its copy of the policies before reading them again.
	// Zero means 2 s.
	Refresh time.Duration
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
}

// Store reads and caches the hub's policies.
type Store struct {
	cfg    Config
	bucket *engine.Bucket

	mu       sync.Mutex
	cached   []Policy
	loadedAt time.Time
}

const policiesKey = "policies"

// Open loads the hub's policies, generating and storing the defaults if there are none. created
// reports whether this call generated them.
func Open(ctx context.Context, eng *engine.Engine, cfg Config) (s *Store, created bool, err error) {
	if cfg.Refresh <= 0 {
		cfg.Refresh = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	b, err := eng.KV(ctx, engine.BucketConfig{Name: "hub", Description: "hub settings and shared access policies"})
	if err != nil {
		return nil, false, err
	}
	s = &Store{cfg: cfg, bucket: b}
	if _, err := b.Get(ctx, policiesKey); errors.Is(err, engine.ErrNotFound) {
		pols := DefaultPolicies()
		for i := range pols {
			if pols[i].PrimaryKey, err = sas.GenerateKey(); err != nil {
				return nil, false, err
			}
			if pols[i].SecondaryKey, err = sas.GenerateKey(); err != nil {
				return nil, false, err
			}
		}
		data, _ := json.Marshal(pols)
		_, err := b.Create(ctx, policiesKey, data)
		switch {
		case err == nil:
			created = true
		case errors.Is(err, engine.ErrExists):
			// Another node generated them first; use theirs.
		default:
			return nil, false, fmt.Errorf("auth: store policies: %w", err)
		}
	} else if err != nil {
		return nil, false, fmt.Errorf("auth: read policies: %w", err)
	}
	if _, err := s.Policies(ctx); err != nil {
		return nil, false, err
	}
	return s, created, nil
}

// Policies returns the hub's policies.
func (s *Store) Policies(ctx context.Context) ([]Policy, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cached != nil && s.cfg.Now().Sub(s.loadedAt) < s.cfg.Refresh {
		return s.cached, nil
	}
	ent, err := s.bucket.Get(ctx, policiesKey)
	if err != nil {
		if s.cached != nil {
			return s.cached, nil // keep serving with the last known keys while the engine recovers
		}
		return nil, fmt.Errorf("auth: read policies: %w", err)
	}
	var pols []Policy
	if err := json.Unmarshal(ent.Value, &pols); err != nil {
		return nil, fmt.Errorf("auth: decode policies: %w", err)
	}
	s.cached, s.loadedAt = pols, s.cfg.Now()
	return pols, nil
}

// Policy returns the named policy. Names match exactly, as IoT Hub's do.
func (s *Store) Policy(ctx context.Context, name string) (Policy, bool, error) {
	pols, err := s.Policies(ctx)
	if err != nil {
		return Policy{}, false, err
	}
	for _, p := range pols {
		if p.KeyName == name {
			return p, true, nil
		}
	}
	return Policy{}, false, nil
}

// HostName returns the hub's host name.
func (s *Store) HostName() string { return s.cfg.HostName }

// AuthorizeService checks the Authorization header of a service request: a SAS token signed by
// a policy's primary or secondary key, not expired, scoped to the hub, whose policy grants need.
func (s *Store) AuthorizeService(ctx context.Context, header string, need Right) (Policy, error) {
	header = strings.TrimSpace(header)
	if header == "" {
		return Policy{}, errcode.New(errcode.IotHubUnauthorizedAccess, "Authorization header missing")
	}
	if strings.HasPrefix(header, "Bearer ") {
		return Policy{}, errcode.New(errcode.IotHubUnauthorizedAccess, "Azure AD tokens are not supported; use a shared access signature")
	}
	tok, err := sas.ParseToken(header)
	if err != nil {
		return Policy{}, errcode.Wrap(errcode.IotHubUnauthorized, err, "Malformed authorization token")
	}
	if tok.KeyName == "" {
		return Policy{}, errcode.New(errcode.IotHubUnauthorized, "the token names no shared access policy (skn)")
	}
	pol, ok, err := s.Policy(ctx, tok.KeyName)
	if err != nil {
		return Policy{}, errcode.Wrap(errcode.ServerError, err, "could not read the shared access policies")
	}
	if !ok {
		return Policy{}, errcode.New(errcode.IotHubUnauthorizedAccess, "Authorization rule '%s' does not exist on this hub", tok.KeyName)
	}
	if err := s.verify(tok, pol); err != nil {
		return Policy{}, err
	}
	if !sas.ResourceCovers(tok.Resource, s.cfg.HostName) {
		return Policy{}, errcode.Wrap(errcode.IotHubUnauthorized, sas.ErrWrongResource,
			"the token's resource '%s' does not cover the hub '%s'", tok.Resource, s.cfg.HostName)
	}
	if !pol.Has(need) {
		return Policy{}, errcode.New(errcode.IotHubUnauthorized, "Authorization rule '%s' does not allow access for '%s'", pol.KeyName, need)
	}
	return pol, nil
}

// verify checks the token against both of the policy's keys.
func (s *Store) verify(tok sas.Token, pol Policy) error {
	return VerifyToken(tok, s.cfg.Now(), pol.PrimaryKey, pol.SecondaryKey)
}

// VerifyToken checks a token against a primary and a secondary key and maps the outcome onto
// IoT Hub's codes: expired is 401002, a signature made with neither key is 401003.
func VerifyToken(tok sas.Token, now time.Time, primary, secondary string) error {
	err := tok.Verify(primary, now)
	if errors.Is(err, sas.ErrBadSignature) && secondary != "" {
		err = tok.Verify(secondary, now)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sas.ErrExpired):
		return errcode.Wrap(errcode.IotHubUnauthorizedAccess, err, "the shared access signature expired at %s", tok.Expiry.UTC().Format(time.RFC3339))
	case errors.Is(err, sas.ErrBadSignature):
		return errcode.Wrap(errcode.IotHubUnauthorized, err, "the shared access signature does not match the key")
	}
	return errcode.Wrap(errcode.IotHubUnauthorized, err, "the shared access signature is invalid")
}
