package blob

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Account is an Azure Storage account (or a compatible server such as Azurite) that Roost hands
// out upload SAS URIs for instead of using its own store.
type Account struct {
	// Name is the account name, part of every SAS's canonical resource.
	Name string
	// Key is the decoded account key that signs SAS tokens.
	Key []byte
	// Endpoint is the Blob service endpoint: https://{account}.blob.core.windows.net, or a
	// path-style endpoint such as https://127.0.0.1:10000/devstoreaccount1 (Azurite).
	Endpoint *url.URL
}

// azuriteKey is the well-known key of Azurite's devstoreaccount1 (UseDevelopmentStorage=true).
const azuriteKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

// ParseConnectionString reads a storage connection string: AccountName and AccountKey with
// either BlobEndpoint or DefaultEndpointsProtocol plus EndpointSuffix (default
// core.windows.net), or UseDevelopmentStorage=true for a local Azurite. Keys are matched
// without regard to case; values are split at the first '=' (keys end in '=').
func ParseConnectionString(s string) (Account, error) {
	kv := map[string]string{}
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return Account{}, fmt.Errorf("storage connection string: %q is not key=value", k)
		}
		kv[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	if strings.EqualFold(kv["usedevelopmentstorage"], "true") {
		kv["accountname"], kv["accountkey"] = "devstoreaccount1", azuriteKey
		if kv["blobendpoint"] == "" {
			kv["blobendpoint"] = "http://127.0.0.1:10000/devstoreaccount1"
		}
	}
	a := Account{Name: kv["accountname"]}
	if a.Name == "" {
		return Account{}, errors.New("storage connection string: AccountName is missing")
	}
	if kv["accountkey"] == "" {
		return Account{}, errors.New("storage connection string: AccountKey is missing (Roost signs upload SAS tokens with it)")
	}
	key, err := base64.StdEncoding.DecodeString(kv["accountkey"])
	if err != nil || len(key) == 0 {
		return Account{}, errors.New("storage connection string: AccountKey is not base64")
	}
	a.Key = key
	ep := kv["blobendpoint"]
	if ep == "" {
		proto := kv["defaultendpointsprotocol"]
		if proto == "" {
			proto = "https"
		}
		suffix := kv["endpointsuffix"]
		if suffix == "" {
			suffix = "core.windows.net"
		}
		ep = proto + "://" + a.Name + ".blob." + suffix
	}
	u, err := url.Parse(strings.TrimRight(ep, "/"))
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return Account{}, fmt.Errorf("storage connection string: BlobEndpoint %q is not an http(s) URL", ep)
	}
	a.Endpoint = u
	return a, nil
}

// HostName is what the file upload answer's hostName holds for this account: the endpoint
// without its scheme (host, port and any path, as in 127.0.0.1:10000/devstoreaccount1). Device
// SDKs build https://{hostName}/{container}/{blob}{sas} from it.
func (a Account) HostName() string { return a.Endpoint.Host + a.Endpoint.Path }

// BlobURL is the URL of a blob in the account, with the name escaped segment by segment.
func (a Account) BlobURL(container, name string) string {
	return a.Endpoint.String() + "/" + container + "/" + EscapeName(name)
}

// EscapeName escapes a blob name for a URL path, keeping its '/' separators.
func EscapeName(name string) string {
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}
