package app

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"text/tabwriter"

	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/sas"
)

const deviceUsage = `Usage: roost device <command> [flags]

Commands:
  create ID [--status enabled|disabled] [--auth sas|selfSigned|certificateAuthority]
            [--primary-key K --secondary-key K] [--primary-thumbprint T --secondary-thumbprint T]
            [--edge] [--status-reason TEXT]
  list [--top N]
  show ID
  update ID [--status S] [--status-reason TEXT] [--primary-key K] [--secondary-key K] [--etag E]
  delete ID [--etag E]
  enable ID
  disable ID [--status-reason TEXT]
  keys ID          print the keys and device connection strings

Common flags: --connection-string, --data-dir, --server, --ca-file, --output table|json
`

func pathEscape(s string) string { return url.PathEscape(s) }

func runDevice(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "--help" || args[0] == "-h" {
		fmt.Fprint(stderr, deviceUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	sub, rest := args[0], args[1:]
	var cf clientFlags
	fs := newFlagSet("device "+sub, stderr, "roost device "+sub+" ...")
	cf.register(fs)
	status := fs.String("status", "", "enabled or disabled")
	reason := fs.String("status-reason", "", "why the status was set")
	authType := fs.String("auth", "", "sas (default), selfSigned, certificateAuthority or none")
	pk := fs.String("primary-key", "", "base64 primary key (default: generated)")
	sk := fs.String("secondary-key", "", "base64 secondary key (default: generated)")
	pt := fs.String("primary-thumbprint", "", "hex SHA-1 or SHA-256 thumbprint (selfSigned)")
	st := fs.String("secondary-thumbprint", "", "hex thumbprint (selfSigned)")
	edge := fs.Bool("edge", false, "mark the device as an IoT Edge device")
	top := fs.Int("top", 0, "list at most this many devices (1-1000)")
	etag := fs.String("etag", "", "only change the device if its etag still matches")
	pos, err := parseArgs(fs, rest)
	if err != nil {
		return 2
	}
	needID := sub != "list"
	if needID && len(pos) != 1 || !needID && len(pos) != 0 {
		fmt.Fprint(stderr, deviceUsage)
		return 2
	}
	c, err := cf.client()
	if err != nil {
		return fail(stderr, "device "+sub, err)
	}
	var id string
	if needID {
		id = pos[0]
	}
	show := func(d registry.Device) int {
		if cf.output == "json" {
			printJSON(stdout, d)
			return 0
		}
		printDevice(stdout, d)
		return 0
	}
	auth := func(base registry.Authentication) registry.Authentication {
		a := base
		if *authType != "" {
			a.Type = *authType
		}
		if *pk != "" || *sk != "" {
			keys := registry.SymmetricKey{}
			if a.SymmetricKey != nil {
				keys = *a.SymmetricKey
			}
			if *pk != "" {
				keys.PrimaryKey = *pk
			}
			if *sk != "" {
				keys.SecondaryKey = *sk
			}
			a.SymmetricKey = &keys
		}
		if *pt != "" || *st != "" {
			th := registry.X509Thumbprint{}
			if *pt != "" {
				th.PrimaryThumbprint = pt
			}
			if *st != "" {
				th.SecondaryThumbprint = st
			}
			a.X509Thumbprint = &th
			if a.Type == "" || a.Type == registry.AuthSAS && *authType == "" {
				a.Type = registry.AuthSelfSigned
				a.SymmetricKey = nil
			}
		}
		return a
	}
	reasonPtr := func() *string {
		if *reason == "" {
			return nil
		}
		return reason
	}
	cmd := "device " + sub
	switch sub {
	case "create":
		d := registry.Device{DeviceID: id, Status: *status, StatusReason: reasonPtr(), Authentication: auth(registry.Authentication{}),
			Capabilities: registry.Capabilities{IoTEdge: *edge}}
		out, err := c.CreateDevice(ctx, d)
		if err != nil {
			return fail(stderr, cmd, err)
		}
		return show(out)
	case "show":
		out, err := c.GetDevice(ctx, id)
		if err != nil {
			return fail(stderr, cmd, err)
		}
		return show(out)
	case "list":
		devs, err := c.ListDevices(ctx, *top)
		if err != nil {
			return fail(stderr, cmd, err)
		}
		printList(stdout, cf.output, devs, "DEVICE ID\tSTATUS\tCONNECTION\tAUTH\tLAST ACTIVITY", func(d registry.Device) string {
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%s", d.DeviceID, d.Status, d.ConnectionState, d.Authentication.Type, timeOrNever(d.LastActivityTime))
		})
		return 0
	case "update", "enable", "disable":
		cur, err := c.GetDevice(ctx, id)
		if err != nil {
			return fail(stderr, cmd, err)
		}
		switch sub {
		case "enable":
			cur.Status = registry.StatusEnabled
			cur.StatusReason = nil
		case "disable":
			cur.Status = registry.StatusDisabled
			cur.StatusReason = reasonPtr()
		default:
			if *status != "" {
				cur.Status = *status
			}
			if *reason != "" {
				cur.StatusReason = reason
			}
			cur.Authentication = auth(cur.Authentication)
			cur.Capabilities.IoTEdge = cur.Capabilities.IoTEdge || *edge
		}
		out, err := c.UpdateDevice(ctx, cur, *etag)
		if err != nil {
			return fail(stderr, cmd, err)
		}
		return show(out)
	case "delete":
		if err := c.DeleteDevice(ctx, id, *etag); err != nil {
			return fail(stderr, cmd, err)
		}
		if cf.output != "json" {
			fmt.Fprintf(stdout, "deleted %s\n", id)
		}
		return 0
	case "keys":
		d, err := c.GetDevice(ctx, id)
		if err != nil {
			return fail(stderr, cmd, err)
		}
		if d.Authentication.Type != registry.AuthSAS || d.Authentication.SymmetricKey == nil {
			return fail(stderr, cmd, fmt.Errorf("device %s uses %s authentication and has no keys", id, d.Authentication.Type))
		}
		k := d.Authentication.SymmetricKey
		out := map[string]string{
			"primaryKey":                k.PrimaryKey,
			"secondaryKey":              k.SecondaryKey,
			"primaryConnectionString":   sas.ConnectionString{HostName: c.HostName(), DeviceID: id, SharedAccessKey: k.PrimaryKey}.String(),
			"secondaryConnectionString": sas.ConnectionString{HostName: c.HostName(), DeviceID: id, SharedAccessKey: k.SecondaryKey}.String(),
		}
		if cf.output == "json" {
			printJSON(stdout, out)
			return 0
		}
		for _, name := range []string{"primaryKey", "secondaryKey", "primaryConnectionString", "secondaryConnectionString"} {
			fmt.Fprintf(stdout, "%-26s %s\n", name, out[name])
		}
		return 0
	}
	fmt.Fprintf(stderr, "roost device: unknown command %q\n\n%s", sub, deviceUsage)
	return 2
}

func timeOrNever(t registry.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func printDevice(w io.Writer, d registry.Device) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("deviceId", d.DeviceID)
	row("status", d.Status)
	if d.StatusReason != nil {
		row("statusReason", *d.StatusReason)
	}
	row("connectionState", d.ConnectionState)
	row("lastActivityTime", timeOrNever(d.LastActivityTime))
	row("authentication", d.Authentication.Type)
	if k := d.Authentication.SymmetricKey; k != nil && k.PrimaryKey != "" {
		row("primaryKey", k.PrimaryKey)
		row("secondaryKey", k.SecondaryKey)
	}
	if th := d.Authentication.X509Thumbprint; th != nil {
		if th.PrimaryThumbprint != nil {
			row("primaryThumbprint", *th.PrimaryThumbprint)
		}
		if th.SecondaryThumbprint != nil {
			row("secondaryThumbprint", *th.SecondaryThumbprint)
		}
	}
	row("iotEdge", fmt.Sprint(d.Capabilities.IoTEdge))
	row("etag", d.ETag)
	row("generationId", d.GenerationID)
	_ = tw.Flush()
}
