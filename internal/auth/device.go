package auth

import (
	"context"
	"errors"
	"strings"

	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/sas"
)

// DeviceCredentials is what a device presents when it connects or sends a request.
type DeviceCredentials struct {
	DeviceID string
	ModuleID string
	// Token is a SAS token (MQTT password, HTTP Authorization header). Empty with X.509.
	Token string
	// Thumbprints are the hex SHA-1 and SHA-256 thumbprints of the client certificate the device
	// presented in the TLS handshake, if any.
	Thumbprints []string
}

// Identity is an authenticated device or module.
type Identity struct {
	DeviceID     string
	ModuleID     string
	GenerationID string
	// Scope is "device" for the identity's own key or certificate, "hub" for a policy key.
	Scope string
	// Type is "sas" or "x509Certificate".
	Type string
	// Policy names the shared access policy that signed the token, when Scope is "hub".
	Policy string
}

// AuthTypeJSON renders the identity as the authType value of Connections records:
// {"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}.
func (id Identity) AuthTypeJSON() string {
	issuer := "iothub"
	if id.Type == "x509Certificate" {
		issuer = "external"
	}
	return `{"scope":"` + id.Scope + `","type":"` + id.Type + `","issuer":"` + issuer + `","acceptingIpFilterRule":null}`
}

// AuthMethodJSON renders the iothub-connection-auth-method annotation stamped on telemetry.
func (id Identity) AuthMethodJSON() string {
	typ := "sas"
	if id.Type == "x509Certificate" {
		typ = "x509"
	}
	return `{"scope":"` + id.Scope + `","type":"` + typ + `","issuer":"iothub","acceptingIpFilterRule":null}`
}

// AuthenticateDevice checks a device's or module's credentials against the registry, with the
// codes settled in spec/decisions.md: an unknown or disabled identity, or an expired token, is
// 401002; a bad signature, a wrong key, a token for another resource, a policy without
// DeviceConnect, or a certificate that matches no thumbprint is 401003.
func (s *Store) AuthenticateDevice(ctx context.Context, reg *registry.Registry, c DeviceCredentials) (Identity, error) {
	if err := registry.ValidateID("DeviceId", c.DeviceID); err != nil {
		return Identity{}, errcode.Wrap(errcode.IotHubUnauthorizedAccess, err, "the device id is not valid")
	}
	var (
		auth     registry.Authentication
		genID    string
		disabled bool
	)
	if c.ModuleID != "" {
		m, err := reg.GetModule(ctx, c.DeviceID, c.ModuleID)
		if err != nil {
			return Identity{}, notFound(err, c)
		}
		d, err := reg.LookupDevice(ctx, c.DeviceID)
		if err != nil {
			return Identity{}, notFound(err, c)
		}
		auth, genID, disabled = m.Authentication, m.GenerationID, d.Status == registry.StatusDisabled
	} else {
		d, err := reg.LookupDevice(ctx, c.DeviceID)
		if err != nil {
			return Identity{}, notFound(err, c)
		}
		auth, genID, disabled = d.Authentication, d.GenerationID, d.Status == registry.StatusDisabled
	}
	id := Identity{DeviceID: c.DeviceID, ModuleID: c.ModuleID, GenerationID: genID, Scope: "device"}
	if disabled {
		return Identity{}, errcode.New(errcode.IotHubUnauthorizedAccess, "device %s is disabled; enable it to connect", c.DeviceID)
	}
	target := sas.DeviceResource(s.cfg.HostName, c.DeviceID, c.ModuleID)
	if c.Token == "" {
		return s.authenticateX509(id, auth, c)
	}
	tok, err := sas.ParseToken(c.Token)
	if err != nil {
		return Identity{}, errcode.Wrap(errcode.IotHubUnauthorized, err, "the shared access signature is malformed")
	}
	id.Type = "sas"
	// A token names a policy in skn; the C SDK's HTTP transport puts the device id there instead,
	// and its file upload sends an empty skn. Both mean the identity's own key.
	if tok.KeyName != "" && tok.KeyName != c.DeviceID {
		pol, ok, err := s.Policy(ctx, tok.KeyName)
		if err != nil {
			return Identity{}, errcode.Wrap(errcode.ServerError, err, "could not read the shared access policies")
		}
		if !ok {
			return Identity{}, errcode.New(errcode.IotHubUnauthorized, "authorization rule '%s' does not exist", tok.KeyName)
		}
		if err := VerifyToken(tok, s.cfg.Now(), pol.PrimaryKey, pol.SecondaryKey); err != nil {
			return Identity{}, err
		}
		if !pol.Has(DeviceConnect) {
			return Identity{}, errcode.New(errcode.IotHubUnauthorized, "authorization rule '%s' does not allow access for DeviceConnect", tok.KeyName)
		}
		if !sas.ResourceCovers(tok.Resource, target) {
			return Identity{}, errcode.New(errcode.IotHubUnauthorized, "the token's resource '%s' does not cover '%s'", tok.Resource, target)
		}
		id.Scope, id.Policy = "hub", pol.KeyName
		return id, nil
	}
	if auth.Type != registry.AuthSAS || auth.SymmetricKey == nil {
		return Identity{}, errcode.New(errcode.IotHubUnauthorized, "%s uses %s authentication, not a shared access key", who(c), auth.Type)
	}
	if err := VerifyToken(tok, s.cfg.Now(), auth.SymmetricKey.PrimaryKey, auth.SymmetricKey.SecondaryKey); err != nil {
		return Identity{}, err
	}
	if !sas.ResourceCovers(tok.Resource, target) {
		return Identity{}, errcode.New(errcode.IotHubUnauthorized, "the token's resource '%s' does not cover '%s'", tok.Resource, target)
	}
	return id, nil
}

func (s *Store) authenticateX509(id Identity, auth registry.Authentication, c DeviceCredentials) (Identity, error) {
	id.Type = "x509Certificate"
	if len(c.Thumbprints) == 0 {
		return Identity{}, errcode.New(errcode.IotHubUnauthorized, "no credentials: send a SAS token or a client certificate")
	}
	switch auth.Type {
	case registry.AuthSelfSigned:
		th := auth.X509Thumbprint
		for _, presented := range c.Thumbprints {
			for _, want := range []*string{th.PrimaryThumbprint, th.SecondaryThumbprint} {
				if want != nil && strings.EqualFold(*want, presented) {
					return id, nil
				}
			}
		}
		return Identity{}, errcode.New(errcode.IotHubUnauthorized, "the client certificate's thumbprint does not match %s's", who(c))
	case registry.AuthCertificateAuthority:
		return Identity{}, errcode.New(errcode.IotHubUnauthorized,
			"%s uses CA-signed certificates, which need registered CA certificates; Roost does not verify certificate chains yet", who(c))
	}
	return Identity{}, errcode.New(errcode.IotHubUnauthorized, "%s uses %s authentication, not an X.509 certificate", who(c), auth.Type)
}

func who(c DeviceCredentials) string {
	if c.ModuleID != "" {
		return "module " + c.ModuleID + " of device " + c.DeviceID
	}
	return "device " + c.DeviceID
}

// notFound turns a registry miss into the connect-time 401002 of the troubleshooting guide.
func notFound(err error, c DeviceCredentials) error {
	var e *errcode.Error
	if errors.As(err, &e) && (e.Code == errcode.DeviceNotFound || e.Code == errcode.ModuleNotFound) {
		return errcode.Wrap(errcode.IotHubUnauthorizedAccess, err, "%s is not registered", who(c))
	}
	return err
}
