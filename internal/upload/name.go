package upload

import (
	"github.com/roost-iot/roost/internal/blob"
	"github.com/roost-iot/roost/internal/errcode"
)

// BlobName returns the stored name of a device's upload, {deviceId}/{name}, after checking it
// against the Blob service's naming rules as [blob.NameProblem] applies them. A missing name is
// 400005 ArgumentNull, a bad one 400004 ArgumentInvalid.
func BlobName(deviceID, name string) (string, error) {
	if name == "" {
		return "", errcode.New(errcode.ArgumentNull, "blobName is required")
	}
	full := deviceID + "/" + name
	if why := blob.NameProblem(full); why != "" {
		return "", errcode.New(errcode.ArgumentInvalid, "blobName '%s' is not valid: stored as {deviceId}/{blobName}, %s", printable(name), why)
	}
	return full, nil
}

// printable bounds a client-chosen name for an error message and hides control characters and
// the ';' the SDKs split error messages on.
func printable(s string) string {
	const max = 128
	out := make([]rune, 0, len(s))
	for _, r := range s {
		if len(out) == max {
			return string(out) + "..."
		}
		if r < 0x20 || r == 0x7f || r == ';' {
			r = '?'
		}
		out = append(out, r)
	}
	return string(out)
}
