package errcode

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
)

// explained lists the codes that must carry a symptom, cause and resolution: every coded error in
// the troubleshooting guide, then the ones users commonly meet.
var explained = []Code{
	// The troubleshooting guide.
	IotHubUnauthorizedAccess, IotHubUnauthorized, DeviceMaximumQueueDepthExceeded,
	DeviceMaximumActiveFileUploadLimitExceeded, DeviceNotFound, DeviceNotOnline,
	DeviceConnectionClosedRemotely, LinkCreationConflict, ThrottlingException, ServerError,
	GenericTimeout,
	// Common beyond the guide.
	ConnectionForcefullyClosedOnNewConnection, IotHubQuotaExceeded, DeviceAlreadyExists,
	DeviceMessageLockLost, PartitionNotFound, GatewayTimeout,
	ArgumentInvalid, IotHubFormatError, PreconditionFailed, MessageTooLarge, TooManyDevices,
	ModuleNotFound, ModuleAlreadyExistsOnDevice, DeviceDisabled, InvalidProtocolVersion,
	ThrottleBacklogLimitExceeded, ThrottlingBacklogTimeout, DeviceThrottlingLimitExceeded,
	ServiceUnavailable,
}

// guideConditions are the guide's errors without a code.
var guideConditions = []string{"DeliveryCountExceeded", "MessageExpired", "Unauthorized"}

func TestCatalogCodesUnique(t *testing.T) {
	seen := make(map[Code]string)
	for _, e := range catalog {
		if prev, ok := seen[e.Code]; ok {
			t.Errorf("code %d is used by %s and %s", e.Code, prev, e.Name)
		}
		seen[e.Code] = e.Name
	}
}

func TestCatalogInCodeOrder(t *testing.T) {
	for i := 1; i < len(catalog); i++ {
		if catalog[i-1].Code >= catalog[i].Code {
			t.Errorf("catalog[%d] = %d comes after %d; keep the table in code order",
				i, catalog[i].Code, catalog[i-1].Code)
		}
	}
}

// TestCatalogNamesUnique checks that every wire name, guide name and condition name leads to one
// thing only, compared case-insensitively as Find and FindCondition compare them.
func TestCatalogNamesUnique(t *testing.T) {
	owner := make(map[string]string) // lower-case name -> what owns it
	claim := func(name, who string) {
		t.Helper()
		key := strings.ToLower(name)
		if prev, ok := owner[key]; ok && prev != who {
			t.Errorf("name %q is used by %s and %s", name, prev, who)
		}
		owner[key] = who
	}
	for _, e := range catalog {
		who := "code " + e.Code.String()
		claim(e.Name, who)
		if e.GuideName != "" {
			claim(e.GuideName, who)
		}
	}
	for _, c := range Conditions {
		claim(c.Name, "condition "+c.Name)
	}
}

func TestCatalogCodeShape(t *testing.T) {
	for _, e := range catalog {
		t.Run(e.Code.String(), func(t *testing.T) {
			s := e.Code.String()
			if len(s) != 6 {
				t.Fatalf("code %s has %d digits, want 6", s, len(s))
			}
			prefix, err := strconv.Atoi(s[:3])
			if err != nil {
				t.Fatalf("code %s: %v", s, err)
			}
			if got := e.Code.HTTPStatus(); got != prefix {
				t.Errorf("HTTPStatus() = %d, want %d", got, prefix)
			}
			if got := e.Status(); got != prefix {
				t.Errorf("Status() = %d, want %d", got, prefix)
			}
			if !validStatus(prefix) {
				t.Errorf("status %d is not an HTTP status", prefix)
			}
		})
	}
}

// validStatus reports whether s is a registered HTTP status. 499 is the one exception: IoT Hub uses
// it, after nginx, for a client that went away before the answer; it is logged, never sent.
func validStatus(s int) bool {
	return http.StatusText(s) != "" || s == 499
}

func TestCatalogEntriesComplete(t *testing.T) {
	for _, e := range catalog {
		t.Run(e.Code.String(), func(t *testing.T) {
			if e.Name == "" {
				t.Error("Name is empty")
			}
			if strings.ContainsAny(e.Name+e.GuideName, " \t\n;:") {
				t.Errorf("names %q/%q must be single tokens: they go in headers and ErrorCode:<Name>;", e.Name, e.GuideName)
			}
			if e.GuideName == e.Name {
				t.Errorf("GuideName %q repeats Name; leave it empty", e.GuideName)
			}
			checkProse(t, "Summary", e.Summary)
			// An entry is explained in full or not at all.
			filled := 0
			for _, s := range []string{e.Symptom, e.Cause, e.Resolution} {
				if s != "" {
					filled++
				}
			}
			if filled != 0 && filled != 3 {
				t.Errorf("only %d of Symptom, Cause, Resolution are set", filled)
			}
			if e.Explained() {
				checkProse(t, "Symptom", e.Symptom)
				checkProse(t, "Cause", e.Cause)
				checkProse(t, "Resolution", e.Resolution)
			}
		})
	}
}

// checkProse checks that a text field is one non-empty line ending a sentence.
func checkProse(t testing.TB, field, s string) {
	t.Helper()
	switch {
	case strings.TrimSpace(s) == "":
		t.Errorf("%s is empty", field)
	case strings.ContainsAny(s, "\n\r"):
		t.Errorf("%s spans lines: %q", field, s)
	case s != strings.TrimSpace(s) || strings.Contains(s, "  "):
		t.Errorf("%s has stray spaces: %q", field, s)
	case !strings.HasSuffix(s, "."):
		t.Errorf("%s does not end with a period: %q", field, s)
	}
}

func TestExplainedErrors(t *testing.T) {
	for _, code := range explained {
		t.Run(code.String(), func(t *testing.T) {
			e, ok := Lookup(code)
			if !ok {
				t.Fatalf("Lookup(%d) found nothing", code)
			}
			if e.Symptom == "" || e.Cause == "" || e.Resolution == "" {
				t.Errorf("%d %s: Symptom, Cause and Resolution must all be set", code, e.Name)
			}
			if !e.Explained() {
				t.Errorf("Explained() = false, want true")
			}
		})
	}
}

func TestConditions(t *testing.T) {
	if got, want := len(Conditions), len(guideConditions); got != want {
		t.Errorf("len(Conditions) = %d, want %d", got, want)
	}
	for _, name := range guideConditions {
		t.Run(name, func(t *testing.T) {
			c, ok := FindCondition(name)
			if !ok {
				t.Fatalf("FindCondition(%q) found nothing", name)
			}
			if c.Name != name {
				t.Errorf("Name = %q, want %q", c.Name, name)
			}
			checkProse(t, "Symptom", c.Symptom)
			checkProse(t, "Cause", c.Cause)
			checkProse(t, "Resolution", c.Resolution)
			checkProse(t, "Where", c.Where)
		})
	}
}

func TestFind(t *testing.T) {
	tests := []struct {
		in     string
		want   Code
		wantOK bool
	}{
		{"404104", DeviceConnectionClosedRemotely, true},
		{" 404104\n", DeviceConnectionClosedRemotely, true},
		{"DeviceConnectionClosedRemotely", DeviceConnectionClosedRemotely, true},
		{"deviceconnectionclosedremotely", DeviceConnectionClosedRemotely, true},
		{"IotHubUnauthorizedAccess", IotHubUnauthorizedAccess, true},
		{"AuthenticationFailed", IotHubUnauthorizedAccess, true},
		{"authenticationfailed", IotHubUnauthorizedAccess, true},
		{"IoTHubUnauthorized", IotHubUnauthorized, true},
		{"IotHubUnauthorized", IotHubUnauthorized, true},
		{"DeviceNotOnline", DeviceNotOnline, true},
		{"404103", DeviceNotOnline, true},
		{"ThrottlingException", ThrottlingException, true},
		{"PartitionNotFound", PartitionNotFound, true}, // 503003, not the retired 404003
		{"", 0, false},
		{"404102", 0, false}, // the misprinted DeviceNotOnline number
		{"404003", 0, false},
		{"999999", 0, false},
		{"4041O4", 0, false},
		{"NoSuchError", 0, false},
		{"MessageExpired", 0, false}, // conditions are found with FindCondition
		{"Unauthorized", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			e, ok := Find(tt.in)
			if ok != tt.wantOK || e.Code != tt.want {
				t.Errorf("Find(%q) = %d, %v; want %d, %v", tt.in, e.Code, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// TestFindEveryEntry checks that each entry is found by its code, its wire name in any case and its
// guide name.
func TestFindEveryEntry(t *testing.T) {
	for _, want := range All() {
		keys := []string{want.Code.String(), want.Name, strings.ToLower(want.Name), strings.ToUpper(want.Name)}
		if want.GuideName != "" {
			keys = append(keys, want.GuideName, strings.ToLower(want.GuideName))
		}
		for _, k := range keys {
			if got, ok := Find(k); !ok || got != want {
				t.Errorf("Find(%q) = %d, %v; want %d, true", k, got.Code, ok, want.Code)
			}
		}
	}
}

func TestFindCondition(t *testing.T) {
	tests := []struct {
		in     string
		want   string
		wantOK bool
	}{
		{"MessageExpired", "MessageExpired", true},
		{"messageexpired", "MessageExpired", true},
		{" DeliveryCountExceeded ", "DeliveryCountExceeded", true},
		{"UNAUTHORIZED", "Unauthorized", true},
		{"DeviceNotFound", "", false},
		{"401002", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			c, ok := FindCondition(tt.in)
			if ok != tt.wantOK || c.Name != tt.want {
				t.Errorf("FindCondition(%q) = %q, %v; want %q, %v", tt.in, c.Name, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestAllIsSortedCopy(t *testing.T) {
	all := All()
	if len(all) != len(catalog) {
		t.Fatalf("len(All()) = %d, want %d", len(all), len(catalog))
	}
	for i := 1; i < len(all); i++ {
		if all[i-1].Code >= all[i].Code {
			t.Fatalf("All() not in code order at %d", i)
		}
	}
	all[0].Name = "changed"
	if catalog[0].Name == "changed" {
		t.Error("All() returned the catalog itself; want a copy")
	}
}

func TestCodeNames(t *testing.T) {
	tests := []struct {
		code                Code
		wantName, wantGuide string
		wantStatus          int
	}{
		{DeviceNotFound, "DeviceNotFound", "DeviceNotFound", 404},
		{IotHubUnauthorizedAccess, "IotHubUnauthorizedAccess", "AuthenticationFailed", 401},
		{IotHubUnauthorized, "IotHubUnauthorized", "IoTHubUnauthorized", 401},
		{IotHubQuotaExceeded, "IotHubQuotaExceeded", "IotHubQuotaExceeded", 403},
		{404999, "GenericNotFound", "GenericNotFound", 404}, // unknown: the status's generic name
		{429999, "GenericTooManyRequests", "GenericTooManyRequests", 429},
		{500777, "ServerError", "ServerError", 500}, // no 500000 entry
		{418001, "ServerError", "ServerError", 418}, // status with no generic entry
		{42, "ServerError", "ServerError", 500},     // not six digits
		{1000000, "ServerError", "ServerError", 500},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			if got := tt.code.Name(); got != tt.wantName {
				t.Errorf("Name() = %q, want %q", got, tt.wantName)
			}
			if got := tt.code.GuideName(); got != tt.wantGuide {
				t.Errorf("GuideName() = %q, want %q", got, tt.wantGuide)
			}
			if got := tt.code.HTTPStatus(); got != tt.wantStatus {
				t.Errorf("HTTPStatus() = %d, want %d", got, tt.wantStatus)
			}
		})
	}
}

// TestConstantsMatchCatalog reads the package source: every Code constant must be named after the
// wire name of its catalog entry and documented as "<Name> is <code>", and every entry must have a
// constant.
func TestConstantsMatchCatalog(t *testing.T) {
	consts := make(map[Code]string)
	for _, f := range parsePackage(t) {
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Code" {
					continue
				}
				for i, name := range vs.Names {
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.INT {
						t.Errorf("constant %s: value is not an integer literal", name.Name)
						continue
					}
					n, _ := strconv.Atoi(lit.Value)
					code := Code(n)
					if prev, dup := consts[code]; dup {
						t.Errorf("constants %s and %s are both %d", prev, name.Name, n)
					}
					consts[code] = name.Name
					e, ok := Lookup(code)
					if !ok {
						t.Errorf("constant %s = %d has no catalog entry", name.Name, n)
						continue
					}
					if e.Name != name.Name {
						t.Errorf("constant %s = %d, but the entry's wire name is %s", name.Name, n, e.Name)
					}
					if want := name.Name + " is " + lit.Value; vs.Doc == nil || !strings.HasPrefix(vs.Doc.Text(), want) {
						t.Errorf("constant %s: doc comment should start %q", name.Name, want)
					}
				}
			}
		}
	}
	for _, e := range catalog {
		if _, ok := consts[e.Code]; !ok {
			t.Errorf("entry %d %s has no constant", e.Code, e.Name)
		}
	}
}

// parsePackage parses the package's non-test Go files with comments.
func parsePackage(t testing.TB) []*ast.File {
	t.Helper()
	fset := token.NewFileSet()
	ents, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, de := range ents {
		name := de.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		t.Fatal("no Go files found")
	}
	return files
}
