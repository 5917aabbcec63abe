package blob

import (
	"net/http"
	"strings"
	"unicode/utf8"
)

// Limits of the Blob service's names.
const (
	// MaxNameLength is the longest blob name, in characters.
	MaxNameLength = 1024
	// MaxSegments is the most '/'-separated segments a blob name may have.
	MaxSegments = 254
)

// CheckName applies the Blob service's naming rules to a blob name (see [NameProblem]); a bad
// name is 400 InvalidResourceName.
func CheckName(name string) error {
	if why := NameProblem(name); why != "" {
		return Fail(http.StatusBadRequest, CodeInvalidResourceName,
			"The specified resource name contains invalid characters or is not valid: %s.", why)
	}
	return nil
}

// NameProblem says what is wrong with a blob name, or returns "" for a good one. It applies the
// Blob service's rules (1 to 1024 characters, at most 254 path segments, valid UTF-8) and the
// ones that keep a name safe to carry in a URL and on disk: no control characters, no backslash,
// no empty, "." or ".." segment (URL parsers would rewrite them, so the name signed and the
// name used would differ) and no trailing '.'.
func NameProblem(name string) string {
	if name == "" {
		return "the name is empty"
	}
	if !utf8.ValidString(name) {
		return "the name is not valid UTF-8"
	}
	if utf8.RuneCountInString(name) > MaxNameLength {
		return "the name is longer than 1024 characters"
	}
	segs := strings.Split(name, "/")
	if len(segs) > MaxSegments {
		return "the name has more than 254 '/'-separated segments"
	}
	for _, s := range segs {
		switch s {
		case "":
			return "the name has an empty segment (a leading, trailing or double '/')"
		case ".", "..":
			return "the name has a '.' or '..' segment"
		}
	}
	if strings.HasSuffix(name, ".") {
		return "the name ends with '.'"
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '\\' || r == 0xfffe || r == 0xffff || (r >= 0x80 && r < 0xa0) {
			return "the name holds a control character or a backslash"
		}
	}
	return ""
}
