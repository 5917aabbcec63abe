package app

import (
	"context"
	"fmt"
	"io"
	"time"
)

const containerSASUsage = `Usage: roost files container-sas [--permissions rcw] [--expiry 1h] [--output json]

Prints a SAS URI of the hub's built-in blob container (the file upload container), signed by the
hub: what Registry.exportDevicesToBlob and importDevicesFromBlob take as their container URIs,
and what a Blob client uses to read devices.txt or put a file to import. --permissions holds r
(read blobs), c (create blobs) and w (write blobs); --expiry is 1m to 720h. The URI grants access
to every blob in the container, device uploads included: hand it out as you would the key of a
storage account. Needs a policy with RegistryWrite.
`

// runFilesContainerSAS prints a container SAS URI of the built-in blob store.
func runFilesContainerSAS(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cf clientFlags
	fs := newFlagSet("files container-sas", stderr, containerSASUsage)
	cf.register(fs)
	perms := fs.String("permissions", "rcw", "r (read), c (create), w (write)")
	expiry := fs.Duration("expiry", time.Hour, "how long the SAS is valid")
	pos, err := parseArgs(fs, args)
	if err != nil || len(pos) != 0 {
		fmt.Fprint(stderr, containerSASUsage)
		return 2
	}
	c, err := cf.client()
	if err != nil {
		return fail(stderr, "files container-sas", err)
	}
	out, err := c.ContainerSAS(ctx, *perms, *expiry)
	if err != nil {
		return fail(stderr, "files container-sas", err)
	}
	if cf.output == "json" {
		printJSON(stdout, out)
		return 0
	}
	fmt.Fprintln(stdout, out.ContainerURI)
	return 0
}
