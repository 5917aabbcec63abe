// Package enginetest starts real engines for tests: the embedded JetStream server on a temp dir,
// or a standalone nats-server process built from the same Go module, on a random loopback port.
//
//	func TestX(t *testing.T) {
//		eng := enginetest.Start(t)            // embedded
//		ext := enginetest.StartExternal(t)    // separate nats-server process
//	}
package enginetest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/engine"
)

// Start opens an embedded engine on a fresh temp dir and closes it when the test ends.
func Start(tb testing.TB) *engine.Engine {
	tb.Helper()
	eng, err := engine.Open(context.Background(), engine.Config{DataDir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("open engine: %v", err)
	}
	tb.Cleanup(func() { _ = eng.Close() })
	return eng
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Each runs fn as two parallel subtests: "embedded" on Start's engine and "external" on a
// connection to a standalone nats-server (StartExternal), for behaviour that must hold on both.
func Each(t *testing.T, fn func(t *testing.T, eng *engine.Engine)) {
	t.Helper()
	for name, open := range map[string]func(testing.TB) *engine.Engine{
		"embedded": Start,
		"external": func(tb testing.TB) *engine.Engine { return StartExternal(tb).Connect(tb) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, open(t))
		})
	}
}

// NATSServerBinary builds nats-server from the module Roost depends on (once per test binary)
// and returns its path.
func NATSServerBinary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "roost-nats-server-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "nats-server")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/nats-io/nats-server/v2")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build nats-server: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatalf("%v", buildErr)
	}
	return binPath
}

// External is a running standalone nats-server.
type External struct {
	URL string
	cmd *exec.Cmd
}

// StartExternal runs a standalone nats-server with JetStream on a random loopback port and stops
// it when the test ends.
func StartExternal(tb testing.TB) *External {
	tb.Helper()
	bin := NATSServerBinary(tb)
	port := freePort(tb)
	dir := tb.TempDir()
	cmd := exec.Command(bin, "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-sd", dir, "-n", "roost-test-"+strconv.Itoa(port))
	logf, err := os.Create(filepath.Join(dir, "nats.log"))
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start nats-server: %v", err)
	}
	x := &External{URL: fmt.Sprintf("nats://127.0.0.1:%d", port), cmd: cmd}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logf.Close()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return x
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "nats.log"))
			tb.Fatalf("nats-server did not start: %v\n%s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Connect opens an engine on the external server and closes it when the test ends.
func (x *External) Connect(tb testing.TB) *engine.Engine {
	tb.Helper()
	eng, err := engine.Open(context.Background(), engine.Config{NATSURLs: []string{x.URL}})
	if err != nil {
		tb.Fatalf("connect engine to %s: %v", x.URL, err)
	}
	tb.Cleanup(func() { _ = eng.Close() })
	return eng
}

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
