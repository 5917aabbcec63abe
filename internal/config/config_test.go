package config

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func load(t *testing.T, args []string, env map[string]string) (Config, error) {
	t.Helper()
	c := Default()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.RegisterFlags(fs)
	err := Load(&c, fs, args, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	return c, err
}

func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "roost.yaml")
	if err := os.WriteFile(file, []byte("hostname: fromfile\nhttps-addr: 127.0.0.1:1\ntls-san:\n  - a.example\n  - 10.0.0.1\ndiag-retention: 48h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := load(t, []string{"--config", file, "--https-addr", "127.0.0.1:3"},
		map[string]string{"ROOST_HOSTNAME": "fromenv", "ROOST_HTTPS_ADDR": "127.0.0.1:2"})
	if err != nil {
		t.Fatal(err)
	}
	if c.HostName != "fromenv" || c.HTTPSAddr != "127.0.0.1:3" || len(c.TLSSANs) != 2 || c.DiagRetention != 48*time.Hour {
		t.Fatalf("got %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := c.source("hostname"); got != "environment variable ROOST_HOSTNAME" {
		t.Fatalf("source %q", got)
	}
}

func TestConfigValidateReportsEverything(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(file, []byte("hostname: ok.example\nbogus: 1\nreplicas: two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := load(t, []string{"--config", file}, nil)
	if err == nil || !strings.Contains(err.Error(), "bad.yaml:2: unknown setting \"bogus\"") || !strings.Contains(err.Error(), "bad.yaml:3: replicas") {
		t.Fatalf("file errors: %v", err)
	}
	c, err := load(t, []string{"--sync", "never", "--replicas", "3", "--log-level", "loud", "--tls-cert", "x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	verr := c.Validate()
	for _, want := range []string{"sync (from flag --sync)", "replicas (from flag --replicas)", "log-level", "tls-cert"} {
		if verr == nil || !strings.Contains(verr.Error(), want) {
			t.Errorf("Validate() = %v; want it to mention %q", verr, want)
		}
	}
	if d := Default(); d.Validate() != nil {
		t.Fatalf("defaults must be valid: %v", d.Validate())
	}
}
