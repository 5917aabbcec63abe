package app

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"text/tabwriter"
	"time"
)

const filesUsage = `Usage: roost files list [DEVICE] [--output json]
       roost files get DEVICE/BLOB [--out FILE|-]
       roost files notifications [--peek] [--wait 0s] [--count N] [--output json]
       roost files container-sas [--permissions rcw] [--expiry 1h] [--output json]

list           lists the files devices uploaded (to every device, or to one), with size and time
get            downloads one file; --out - writes it to standard output, the default is a file
               named after the blob's last segment in the current directory
notifications  receives the file upload notifications waiting in the service-side queue, prints
               them and completes them (--peek abandons them instead, so they stay queued);
               --wait keeps polling that long for new ones
container-sas  prints a SAS URI of the built-in blob container, for import/export jobs

Common flags: --connection-string, --data-dir, --server, --ca-file
`

func runFiles(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, filesUsage)
		return 2
	}
	switch args[0] {
	case "list", "ls":
		return runFilesList(ctx, args[1:], stdout, stderr)
	case "get", "download":
		return runFilesGet(ctx, args[1:], stdout, stderr)
	case "notifications", "notification":
		return runFilesNotifications(ctx, args[1:], stdout, stderr)
	case "container-sas":
		return runFilesContainerSAS(ctx, args[1:], stdout, stderr)
	case "help", "--help", "-h":
		fmt.Fprint(stdout, filesUsage)
		return 0
	}
	fmt.Fprintf(stderr, "roost files: unknown command %q\n\n%s", args[0], filesUsage)
	return 2
}

func runFilesList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cf clientFlags
	fs := newFlagSet("files list", stderr, "roost files list [DEVICE] [flags]")
	cf.register(fs)
	pos, err := parseArgs(fs, args)
	if err != nil || len(pos) > 1 {
		fmt.Fprint(stderr, filesUsage)
		return 2
	}
	dev := ""
	if len(pos) == 1 {
		dev = pos[0]
	}
	c, err := cf.client()
	if err != nil {
		return fail(stderr, "files list", err)
	}
	files, err := c.ListFiles(ctx, dev)
	if err != nil {
		return fail(stderr, "files list", err)
	}
	if cf.output == "json" {
		printJSON(stdout, files)
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BLOB\tSIZE\tLAST UPDATED\tCONTENT TYPE")
	for _, f := range files {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", f.BlobName, f.Size, f.LastUpdated.Format(time.RFC3339), f.ContentType)
	}
	_ = tw.Flush()
	return 0
}

func runFilesGet(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cf clientFlags
	fs := newFlagSet("files get", stderr, "roost files get DEVICE/BLOB [--out FILE|-]")
	cf.register(fs)
	out := fs.String("out", "", "where to write the file; - is standard output (default: the blob's last segment)")
	pos, err := parseArgs(fs, args)
	if err != nil || len(pos) != 1 {
		fmt.Fprint(stderr, filesUsage)
		return 2
	}
	dev, name, ok := strings.Cut(pos[0], "/")
	if !ok || dev == "" || name == "" {
		fmt.Fprintln(stderr, "roost files get: name the file as DEVICE/BLOB, as roost files list shows it")
		return 2
	}
	c, err := cf.client()
	if err != nil {
		return fail(stderr, "files get", err)
	}
	var w io.Writer = stdout
	dest := *out
	if dest == "" {
		dest = path.Base(name)
	}
	var tmp *os.File
	if dest != "-" {
		// Download beside the destination and rename at the end, so a failed download leaves no
		// partial file behind.
		if tmp, err = os.CreateTemp(dirOf(dest), ".roost-download-*"); err != nil {
			return fail(stderr, "files get", err)
		}
		defer os.Remove(tmp.Name())
		w = tmp
	}
	n, err := c.DownloadFile(ctx, dev, name, w)
	if tmp != nil {
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), dest)
		}
	}
	if err != nil {
		return fail(stderr, "files get", err)
	}
	if dest != "-" {
		fmt.Fprintf(stderr, "wrote %s (%d bytes)\n", dest, n)
	}
	return 0
}

func dirOf(p string) string {
	if d := path.Dir(strings.ReplaceAll(p, "\\", "/")); d != "" {
		return d
	}
	return "."
}

func runFilesNotifications(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cf clientFlags
	fs := newFlagSet("files notifications", stderr, "roost files notifications [--peek] [--wait D] [--count N]")
	cf.register(fs)
	peek := fs.Bool("peek", false, "abandon the notifications after printing them, so they stay in the queue")
	wait := fs.Duration("wait", 0, "keep polling this long for notifications when the queue is empty")
	count := fs.Int("count", 0, "stop after this many notifications (0: all)")
	if _, err := parseArgs(fs, args); err != nil {
		return 2
	}
	c, err := cf.client()
	if err != nil {
		return fail(stderr, "files notifications", err)
	}
	deadline := time.Now().Add(*wait)
	got := 0
	var tw *tabwriter.Writer
	if cf.output != "json" {
		tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "DEVICE\tBLOB\tSIZE\tENQUEUED")
	}
	var held []string // with --peek, abandoned at the end so each is printed once
	defer func() {
		for _, tok := range held {
			_ = c.AbandonFileNotification(context.WithoutCancel(ctx), tok)
		}
	}()
	for *count == 0 || got < *count {
		n, ok, err := c.ReceiveFileNotification(ctx)
		if err != nil {
			return fail(stderr, "files notifications", err)
		}
		if !ok {
			if time.Now().After(deadline) {
				break
			}
			select {
			case <-ctx.Done():
				return 0
			case <-time.After(time.Second):
			}
			continue
		}
		got++
		if tw != nil {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", n.DeviceID, n.BlobName, n.BlobSizeInBytes, n.EnqueuedTimeUtc.Format(time.RFC3339))
			_ = tw.Flush()
		} else {
			printJSON(stdout, n)
		}
		if *peek {
			held = append(held, n.LockToken)
			continue
		}
		if err := c.CompleteFileNotification(ctx, n.LockToken); err != nil {
			return fail(stderr, "files notifications", err)
		}
	}
	if tw != nil {
		_ = tw.Flush()
	}
	if got == 0 {
		fmt.Fprintln(stderr, "no file upload notifications waiting")
	}
	return 0
}
