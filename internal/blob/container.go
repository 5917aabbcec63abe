package blob

import (
	"strings"
	"time"
)

// ContainerURI is the URL of the store's container as clients outside the hub see it, without
// a SAS: https://{host}/{container}.
func (l *Local) ContainerURI() string {
	return "https://" + l.cfg.Host + "/" + l.cfg.Container
}

// ContainerSAS returns a container SAS (sr=c) valid until expiry with the permissions of perms
// that a container SAS of the built-in store can use: r (read a blob), c (create one), w (write
// one). Other letters are dropped; the result is in the Blob service's canonical order. It is
// what the storage account owner hands to IoT Hub's import/export jobs.
func (l *Local) ContainerSAS(perms string, expiry time.Time) string {
	var canon strings.Builder
	for _, p := range "rcw" {
		if strings.ContainsRune(perms, p) {
			canon.WriteRune(p)
		}
	}
	s := SAS{Version: SASVersion, Resource: "c", Permissions: canon.String(), Expiry: expiry.UTC().Format(sasTime)}
	text, _ := s.StringToSign(CanonicalResource(l.cfg.Account, l.cfg.Container, ""))
	s.Signature = Sign(l.key, text)
	return "?" + s.Encode()
}
