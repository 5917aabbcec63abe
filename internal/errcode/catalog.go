package errcode

import (
	"sort"
	"strconv"
	"strings"
)

// Entry describes one catalogued error code.
type Entry struct {
	// Code identifies the entry; the catalog is keyed on it.
	Code Code
	// Name is the wire name used in REST bodies and the iothub-errorcode header (the SDK spelling,
	// e.g. "IotHubUnauthorizedAccess").
	Name string
	// GuideName is the name the troubleshooting guide and diagnostic records use when it differs
	// from Name (e.g. "AuthenticationFailed" for 401002). Empty when they are the same.
	GuideName string
	// Summary is a one-line meaning.
	Summary string
	// Symptom, Cause and Resolution explain the error to a user in Roost's own words. They are
	// filled for every error in the troubleshooting guide and the ones users commonly meet.
	Symptom    string
	Cause      string
	Resolution string
}

// Status returns the HTTP status of the entry's code.
func (e Entry) Status() int { return e.Code.HTTPStatus() }

// Explained reports whether the entry carries a symptom, cause and resolution for users, as the
// catalog gives for the codes in the troubleshooting guide and the ones users commonly meet.
func (e Entry) Explained() bool {
	return e.Symptom != "" && e.Cause != "" && e.Resolution != ""
}

var (
	byCode map[Code]*Entry
	byName map[string]*Entry
)

func init() {
	byCode = make(map[Code]*Entry, len(catalog))
	byName = make(map[string]*Entry, 2*len(catalog))
	for i := range catalog {
		e := &catalog[i]
		byCode[e.Code] = e
		byName[strings.ToLower(e.Name)] = e
		if e.GuideName != "" {
			byName[strings.ToLower(e.GuideName)] = e
		}
	}
}

// Lookup returns the catalog entry for code.
func Lookup(code Code) (Entry, bool) {
	e, ok := byCode[code]
	if !ok {
		return Entry{}, false
	}
	return *e, true
}

// Find returns the entry for a six-digit code or for a wire or guide name, case-insensitively
// ("404104", "DeviceConnectionClosedRemotely", "authenticationfailed").
//
// Find only returns entries that have a code. The guide's conditions without one
// (DeliveryCountExceeded, MessageExpired, Unauthorized) are found with [FindCondition]; a caller that
// explains any name a user types, like `roost errors explain`, tries Find first and then
// FindCondition.
func Find(s string) (Entry, bool) {
	s = strings.TrimSpace(s)
	if n, err := strconv.Atoi(s); err == nil {
		return Lookup(Code(n))
	}
	e, ok := byName[strings.ToLower(s)]
	if !ok {
		return Entry{}, false
	}
	return *e, true
}

// All returns every catalog entry in code order.
func All() []Entry {
	out := make([]Entry, len(catalog))
	copy(out, catalog)
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out
}
