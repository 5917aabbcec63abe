package blob

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// SASVersion is the signed version (sv) of the SAS tokens Roost issues. Its string-to-sign is
// the 2018-11-09 form (signed resource and snapshot time, no encryption scope), which both the
// Blob service and Azurite accept.
const SASVersion = "2019-12-12"

// SAS is a Blob service shared access signature (a "service SAS"), as it appears in a blob
// URL's query string. Start and expiry keep the exact text of st and se, because the signature
// covers that text.
type SAS struct {
	Version     string // sv
	Resource    string // sr: "b" (one blob) or "c" (a container)
	Permissions string // sp, in the canonical order racwd...
	Start       string // st, optional
	Expiry      string // se
	IP          string // sip: one address or a range a-b
	Protocol    string // spr: "https" or "https,http"
	Identifier  string // si: a stored access policy (not supported by the built-in store)
	Snapshot    string // snapshot time (sr=bs) or version id (sr=bv)
	Scope       string // ses: encryption scope (sv >= 2020-12-06)
	// Response header overrides (rscc, rscd, rsce, rscl, rsct); covered by the signature.
	CacheControl, ContentDisposition, ContentEncoding, ContentLanguage, ContentType string
	Signature                                                                       string // sig, base64
}

// Permission letters of a blob SAS.
const (
	PermRead   = 'r'
	PermAdd    = 'a'
	PermCreate = 'c'
	PermWrite  = 'w'
	PermDelete = 'd'
)

// Allows reports whether the SAS grants permission p.
func (s SAS) Allows(p byte) bool { return strings.IndexByte(s.Permissions, p) >= 0 }

// ParseSAS reads the SAS fields of a blob URL's query. It fails only when there is no
// signature at all; [SAS.Verify] checks the rest.
func ParseSAS(q url.Values) (SAS, bool) {
	s := SAS{
		Version: q.Get("sv"), Resource: q.Get("sr"), Permissions: q.Get("sp"), Start: q.Get("st"),
		Expiry: q.Get("se"), IP: q.Get("sip"), Protocol: q.Get("spr"), Identifier: q.Get("si"),
		Scope: q.Get("ses"), CacheControl: q.Get("rscc"), ContentDisposition: q.Get("rscd"),
		ContentEncoding: q.Get("rsce"), ContentLanguage: q.Get("rscl"), ContentType: q.Get("rsct"),
		Signature: q.Get("sig"),
	}
	if s.Resource == "bs" {
		s.Snapshot = q.Get("snapshot")
	} else if s.Resource == "bv" {
		s.Snapshot = q.Get("versionid")
	}
	return s, s.Signature != ""
}

// CanonicalResource is the resource a service SAS signs: /blob/{account}/{container}[/{blob}],
// with the blob name unescaped.
func CanonicalResource(account, container, name string) string {
	if name == "" {
		return "/blob/" + account + "/" + container
	}
	return "/blob/" + account + "/" + container + "/" + name
}

// StringToSign builds the text the signature covers, in the form of the token's version:
// 2015-04-05 up to 2018-11-09 without signed resource, up to 2020-12-06 without encryption
// scope, the full form since. It returns false for versions older than 2015-04-05.
func (s SAS) StringToSign(canonical string) (string, bool) {
	if s.Version < "2015-04-05" {
		return "", false
	}
	parts := []string{s.Permissions, s.Start, s.Expiry, canonical, s.Identifier, s.IP, s.Protocol, s.Version}
	if s.Version >= "2018-11-09" {
		parts = append(parts, s.Resource, s.Snapshot)
		if s.Version >= "2020-12-06" {
			parts = append(parts, s.Scope)
		}
	}
	parts = append(parts, s.CacheControl, s.ContentDisposition, s.ContentEncoding, s.ContentLanguage, s.ContentType)
	return strings.Join(parts, "\n"), true
}

// Sign returns base64(HMAC-SHA256(key, text)), the signature of a string-to-sign.
func Sign(key []byte, text string) string {
	return base64.StdEncoding.EncodeToString(hmacSum(key, text))
}

// Encode renders the SAS as a query string, without the leading '?'. Values are escaped, so a
// signature's '+', '/' and '=' survive.
func (s SAS) Encode() string {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("sv", s.Version)
	set("st", s.Start)
	set("se", s.Expiry)
	set("sr", s.Resource)
	set("sp", s.Permissions)
	set("sip", s.IP)
	set("spr", s.Protocol)
	set("si", s.Identifier)
	set("ses", s.Scope)
	set("rscc", s.CacheControl)
	set("rscd", s.ContentDisposition)
	set("rsce", s.ContentEncoding)
	set("rscl", s.ContentLanguage)
	set("rsct", s.ContentType)
	set("sig", s.Signature)
	return q.Encode()
}

// sasTime is the form of st and se in tokens Roost makes: UTC, seconds precision.
const sasTime = "2006-01-02T15:04:05Z"

// BlobSAS makes a signed SAS for one blob with the given permissions (in canonical order, such
// as "cw" or "r"), valid until expiry.
func BlobSAS(account string, key []byte, container, name, perms string, expiry time.Time) SAS {
	s := SAS{Version: SASVersion, Resource: "b", Permissions: perms, Expiry: expiry.UTC().Format(sasTime)}
	text, _ := s.StringToSign(CanonicalResource(account, container, name))
	s.Signature = Sign(key, text)
	return s
}

// parseSASTime accepts the ISO 8601 forms the Blob service accepts in st and se.
func parseSASTime(v string) (time.Time, bool) {
	for _, l := range []string{"2006-01-02T15:04:05Z", "2006-01-02T15:04:05.9999999Z", "2006-01-02T15:04Z", "2006-01-02"} {
		if t, err := time.Parse(l, v); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// VerifyRequest is what [SAS.Verify] checks a token against.
type VerifyRequest struct {
	Account, Container, Name string
	// Key is the account key the token must be signed with.
	Key []byte
	// Need lists the permissions that allow the operation; any one of them is enough (Put Blob
	// needs create or write).
	Need string
	Now  time.Time
	// RemoteIP is the caller's address, for sip.
	RemoteIP net.IP
}

// Verify checks the token for an operation on one blob: the signature over the blob's
// canonical resource (or its container's, for sr=c), the validity window, the protocol, the
// caller's address and the permission. Failures are Blob service errors:
// AuthenticationFailed, AuthorizationResourceTypeMismatch, AuthorizationPermissionMismatch,
// AuthorizationSourceIPMismatch.
func (s SAS) Verify(r VerifyRequest) error {
	for _, req := range []struct{ name, v string }{{"sv", s.Version}, {"sr", s.Resource}, {"se", s.Expiry}, {"sp", s.Permissions}} {
		if req.v == "" {
			return authFail("The parameter " + req.name + " is mandatory but was not given")
		}
	}
	if s.Identifier != "" {
		return authFail("Stored access policies (si) are not supported by this endpoint")
	}
	canonical := ""
	switch s.Resource {
	case "b":
		canonical = CanonicalResource(r.Account, r.Container, r.Name)
	case "c":
		canonical = CanonicalResource(r.Account, r.Container, "")
	default:
		return Fail(http.StatusForbidden, CodeAuthorizationResourceType,
			"This request is not authorized to perform this operation using this resource type.")
	}
	text, ok := s.StringToSign(canonical)
	if !ok {
		return authFail("Version " + s.Version + " of the SAS is not supported; use 2015-04-05 or later")
	}
	sig, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(s.Signature, " ", "+"))
	want := hmacSum(r.Key, text)
	if err != nil || !hmac.Equal(sig, want) {
		return authFail("Signature did not match. String to sign used was " + strings.ReplaceAll(text, "\n", `\n`))
	}
	exp, ok := parseSASTime(s.Expiry)
	if !ok {
		return authFail("The expiry time (se) '" + s.Expiry + "' is not an ISO 8601 UTC time")
	}
	now := r.Now.UTC()
	if !now.Before(exp) {
		return authFail("Signed expiry time [" + exp.Format(http.TimeFormat) + "] must be after signed start time [" + now.Format(http.TimeFormat) + "]")
	}
	if s.Start != "" {
		st, ok := parseSASTime(s.Start)
		if !ok {
			return authFail("The start time (st) '" + s.Start + "' is not an ISO 8601 UTC time")
		}
		if now.Before(st) {
			return authFail("Signed start time [" + st.Format(http.TimeFormat) + "] is in the future")
		}
	}
	if s.Protocol != "" && s.Protocol != "https" && s.Protocol != "https,http" {
		return Fail(http.StatusForbidden, CodeAuthorizationProtocolMismatch,
			"This request is not authorized to perform this operation using this protocol.")
	}
	if s.IP != "" && !ipAllowed(s.IP, r.RemoteIP) {
		return Fail(http.StatusForbidden, CodeAuthorizationSourceIP,
			"This request is not authorized to perform this operation using this source IP %s.", r.RemoteIP)
	}
	if strings.IndexAny(s.Permissions, r.Need) < 0 {
		return Fail(http.StatusForbidden, CodeAuthorizationPermission,
			"This request is not authorized to perform this operation using this permission.")
	}
	return nil
}

func hmacSum(key []byte, text string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(text))
	return m.Sum(nil)
}

// ipAllowed checks addr against sip: one IPv4 address or a range "a-b".
func ipAllowed(sip string, addr net.IP) bool {
	if addr == nil {
		return false
	}
	lo, hi, isRange := strings.Cut(sip, "-")
	from, to := net.ParseIP(lo), net.ParseIP(lo)
	if isRange {
		to = net.ParseIP(hi)
	}
	if from == nil || to == nil {
		return false
	}
	a, f, t := addr.To16(), from.To16(), to.To16()
	return bytes.Compare(a, f) >= 0 && bytes.Compare(a, t) <= 0
}
