package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/roost-iot/roost/internal/auth"
	"github.com/roost-iot/roost/internal/client"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/sas"
)

// clientFlags are the flags every client command shares.
type clientFlags struct {
	connStr string
	dataDir string
	server  string
	caFile  string
	output  string
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.connStr, "connection-string", envOr("ROOST_CONNECTION_STRING", ""), "service connection string (default: $ROOST_CONNECTION_STRING, else the local hub's iothubowner)")
	fs.StringVar(&f.dataDir, "data-dir", envOr("ROOST_DATA_DIR", "./roost-data"), "data dir of a local 'roost serve'")
	fs.StringVar(&f.server, "server", envOr("ROOST_SERVER", ""), "host:port to connect to (default: the local hub's address, else HostName:443)")
	fs.StringVar(&f.caFile, "ca-file", envOr("ROOST_CA_FILE", ""), "extra CA certificate (PEM) to trust (default: the local hub's CA)")
	fs.StringVar(&f.output, "output", "table", "output format: table or json")
}

// client builds a REST client from the flags, falling back on the local hub's data dir.
func (f *clientFlags) client() (*client.Client, error) {
	cfg := client.Config{ConnectionString: f.connStr, Address: f.server}
	caFile := f.caFile
	if cfg.ConnectionString == "" || cfg.Address == "" || caFile == "" {
		lf, err := readLocal(f.dataDir)
		if err != nil && cfg.ConnectionString == "" {
			return nil, err
		}
		if err == nil {
			if cfg.ConnectionString == "" {
				cs, err := policyConnectionString(lf, "iothubowner")
				if err != nil {
					return nil, err
				}
				cfg.ConnectionString = cs
			}
			if parsed, perr := sas.ParseConnectionString(cfg.ConnectionString); perr == nil && parsed.HostName == lf.HostName {
				if cfg.Address == "" {
					cfg.Address = dialable(lf.HTTPSAddr)
				}
				if caFile == "" {
					caFile = lf.CAFile
				}
			}
		}
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		cfg.CAPEM = pem
	}
	return client.New(cfg)
}

// dialable turns a listening address such as [::]:443 into one a client can dial.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func policyConnectionString(lf localFile, name string) (string, error) {
	for _, p := range lf.Policies {
		if p.KeyName == name {
			return sas.ConnectionString{HostName: lf.HostName, SharedAccessKeyName: p.KeyName, SharedAccessKey: p.PrimaryKey}.String(), nil
		}
	}
	names := make([]string, 0, len(lf.Policies))
	for _, p := range lf.Policies {
		names = append(names, p.KeyName)
	}
	return "", fmt.Errorf("no shared access policy named %q (the hub has %s)", name, strings.Join(names, ", "))
}

// parseArgs parses flags that may come before or after positional arguments.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func newFlagSet(name string, stderr io.Writer, help string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n\nFlags:\n", help)
		fs.PrintDefaults()
	}
	return fs
}

// fail prints an error, with the catalog's explanation for IoT Hub errors, and returns exit 1.
func fail(stderr io.Writer, cmd string, err error) int {
	var e *errcode.Error
	if errors.As(err, &e) {
		fmt.Fprintf(stderr, "roost %s: %d %s: %s\n", cmd, e.Code, e.Code.Name(), e.Msg)
		if ent, ok := errcode.Lookup(e.Code); ok && ent.Resolution != "" {
			fmt.Fprintf(stderr, "  what to do: %s\n  (roost errors explain %d)\n", ent.Resolution, e.Code)
		}
		return 1
	}
	fmt.Fprintf(stderr, "roost %s: %v\n", cmd, err)
	return 1
}

func printJSON(w io.Writer, v any) {
	b, _ := json.MarshalIndent(v, "", "  ")
	fmt.Fprintln(w, string(b))
}

// printList writes what a list command got: the items as JSON with --output json, otherwise a
// table with the tab-separated column names and one tab-separated row per item.
func printList[T any](w io.Writer, output string, items []T, columns string, row func(T) string) {
	if output == "json" {
		printJSON(w, items)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, columns)
	for _, it := range items {
		fmt.Fprintln(tw, row(it))
	}
	_ = tw.Flush()
}

func runConnectionString(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cf clientFlags
	fs := newFlagSet("connection-string", stderr, "roost connection-string [--policy NAME] [--device ID [--module M]]")
	cf.register(fs)
	policy := fs.String("policy", "iothubowner", "shared access policy for a service connection string")
	device := fs.String("device", "", "print this device's connection string instead")
	module := fs.String("module", "", "with --device: print this module's connection string")
	if _, err := parseArgs(fs, args); err != nil {
		return 2
	}
	if *device == "" {
		if cf.connStr != "" && !isFlagSet(fs, "policy") {
			fmt.Fprintln(stdout, cf.connStr)
			return 0
		}
		lf, err := readLocal(cf.dataDir)
		if err != nil {
			return fail(stderr, "connection-string", err)
		}
		cs, err := policyConnectionString(lf, *policy)
		if err != nil {
			return fail(stderr, "connection-string", err)
		}
		fmt.Fprintln(stdout, cs)
		return 0
	}
	c, err := cf.client()
	if err != nil {
		return fail(stderr, "connection-string", err)
	}
	key, err := identityKey(ctx, c, *device, *module, false)
	if err != nil {
		return fail(stderr, "connection-string", err)
	}
	fmt.Fprintln(stdout, sas.ConnectionString{HostName: c.HostName(), DeviceID: *device, ModuleID: *module, SharedAccessKey: key}.String())
	return 0
}

func isFlagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// identityKey reads a device's or module's primary (or secondary) key over the REST API.
func identityKey(ctx context.Context, c *client.Client, device, module string, secondary bool) (string, error) {
	var a registry.Authentication
	if module != "" {
		var m registry.Module
		if _, err := c.Do(ctx, "GET", "/devices/"+pathEscape(device)+"/modules/"+pathEscape(module), nil, nil, nil, &m); err != nil {
			return "", err
		}
		a = m.Authentication
	} else {
		d, err := c.GetDevice(ctx, device)
		if err != nil {
			return "", err
		}
		a = d.Authentication
	}
	if a.Type != registry.AuthSAS || a.SymmetricKey == nil {
		return "", fmt.Errorf("%s uses %s authentication and has no symmetric key", device, a.Type)
	}
	if secondary {
		return a.SymmetricKey.SecondaryKey, nil
	}
	return a.SymmetricKey.PrimaryKey, nil
}

func runCACert(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("ca-cert", stderr, "roost ca-cert [--data-dir DIR]")
	dataDir := fs.String("data-dir", envOr("ROOST_DATA_DIR", "./roost-data"), "data dir of the hub")
	if _, err := parseArgs(fs, args); err != nil {
		return 2
	}
	path := filepath.Join(*dataDir, "tls", "ca.crt")
	if lf, err := readLocal(*dataDir); err == nil && lf.CAFile != "" {
		path = lf.CAFile
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return fail(stderr, "ca-cert", fmt.Errorf("no CA certificate at %s (run roost serve once, or the hub uses an operator-supplied certificate): %w", path, err))
	}
	_, _ = stdout.Write(pem)
	return 0
}

func runSASToken(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cf clientFlags
	fs := newFlagSet("sas-token", stderr, "roost sas-token (--device ID [--module M] | --policy NAME) [--duration 1h]")
	cf.register(fs)
	device := fs.String("device", "", "device the token is for (signed with its key)")
	module := fs.String("module", "", "module of --device the token is for")
	policy := fs.String("policy", "", "shared access policy to sign a service token with")
	duration := fs.Duration("duration", time.Hour, "how long the token is valid")
	secondary := fs.Bool("secondary", false, "sign with the secondary key")
	if _, err := parseArgs(fs, args); err != nil {
		return 2
	}
	if (*device == "") == (*policy == "") {
		fmt.Fprintln(stderr, "roost sas-token: give exactly one of --device or --policy")
		return 2
	}
	if *duration <= 0 {
		fmt.Fprintln(stderr, "roost sas-token: --duration must be positive")
		return 2
	}
	expiry := time.Now().Add(*duration)
	if *policy != "" {
		lf, err := readLocal(cf.dataDir)
		if err != nil {
			return fail(stderr, "sas-token", err)
		}
		var pol *auth.Policy
		for i := range lf.Policies {
			if lf.Policies[i].KeyName == *policy {
				pol = &lf.Policies[i]
			}
		}
		if pol == nil {
			return fail(stderr, "sas-token", fmt.Errorf("no shared access policy named %q", *policy))
		}
		key := pol.PrimaryKey
		if *secondary {
			key = pol.SecondaryKey
		}
		tok, err := sas.Sign(lf.HostName, key, pol.KeyName, expiry)
		if err != nil {
			return fail(stderr, "sas-token", err)
		}
		fmt.Fprintln(stdout, tok)
		return 0
	}
	c, err := cf.client()
	if err != nil {
		return fail(stderr, "sas-token", err)
	}
	key, err := identityKey(ctx, c, *device, *module, *secondary)
	if err != nil {
		return fail(stderr, "sas-token", err)
	}
	tok, err := sas.Sign(sas.DeviceResource(c.HostName(), *device, *module), key, "", expiry)
	if err != nil {
		return fail(stderr, "sas-token", err)
	}
	fmt.Fprintln(stdout, tok)
	return 0
}

func runErrors(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("errors", stderr, "roost errors [list] | roost errors explain <code|name> [--output json]")
	output := fs.String("output", "table", "output format: table or json")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) == 0 || pos[0] == "list" {
		all := errcode.All()
		if *output == "json" {
			out := make([]errorJSON, 0, len(all))
			for _, e := range all {
				out = append(out, toErrorJSON(e))
			}
			printJSON(stdout, out)
			return 0
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "CODE\tNAME\tHTTP\tSUMMARY")
		for _, e := range all {
			name := e.Name
			if e.GuideName != "" {
				name += " (" + e.GuideName + ")"
			}
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\n", e.Code, name, e.Status(), e.Summary)
		}
		_ = tw.Flush()
		return 0
	}
	if pos[0] != "explain" || len(pos) != 2 {
		fs.Usage()
		return 2
	}
	e, ok := errcode.Find(pos[1])
	if !ok {
		cond, ok := errcode.FindCondition(pos[1])
		if !ok {
			fmt.Fprintf(stderr, "roost errors: no error code or name %q (roost errors lists them)\n", pos[1])
			return 1
		}
		if *output == "json" {
			printJSON(stdout, toConditionJSON(cond))
			return 0
		}
		fmt.Fprintf(stdout, "%s (no error code)\nWhere it shows: %s\n", cond.Name, cond.Where)
		for _, s := range []struct{ title, text string }{{"Symptom", cond.Symptom}, {"Cause", cond.Cause}, {"Resolution", cond.Resolution}} {
			fmt.Fprintf(stdout, "\n%s\n  %s\n", s.title, s.text)
		}
		return 0
	}
	if *output == "json" {
		printJSON(stdout, toErrorJSON(e))
		return 0
	}
	fmt.Fprintf(stdout, "%d %s", e.Code, e.Name)
	if e.GuideName != "" {
		fmt.Fprintf(stdout, " (in diagnostic logs: %s)", e.GuideName)
	}
	fmt.Fprintf(stdout, "\nHTTP status %d. %s\n", e.Status(), e.Summary)
	for _, s := range []struct{ title, text string }{{"Symptom", e.Symptom}, {"Cause", e.Cause}, {"Resolution", e.Resolution}} {
		if s.text != "" {
			fmt.Fprintf(stdout, "\n%s\n  %s\n", s.title, s.text)
		}
	}
	return 0
}
