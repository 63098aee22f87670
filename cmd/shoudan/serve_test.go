package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoudan/shoudan/switch/app"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { switchtest.Main(m) }

// serveSetup is a data directory and a demo config on free ports.
type serveSetup struct {
	dir, cfg             string
	prod, test, ctl, adm string
}

func newServe(t *testing.T, edit func(string) string) *serveSetup {
	s := &serveSetup{dir: switchtest.TempDir(t), prod: switchtest.FreePort(t), test: switchtest.FreePort(t), ctl: switchtest.FreePort(t), adm: switchtest.FreePort(t)}
	y := string(app.Demo)
	for _, r := range [][2]string{
		{"addr: 127.0.0.1:5000", "addr: " + s.prod},
		{"addr: 127.0.0.1:5001", "addr: " + s.test},
		{"control: 127.0.0.1:5080", "control: " + s.ctl},
		{"addr: 127.0.0.1:9100", "addr: " + s.adm},
		{"addr: 127.0.0.1:8080", "addr: 127.0.0.1:0"},
		{"data_dir: ./data", "data_dir: " + filepath.Join(s.dir, "data")},
	} {
		require.Contains(t, y, r[0])
		y = strings.Replace(y, r[0], r[1], 1)
	}
	if edit != nil {
		y = edit(y)
	}
	s.cfg = filepath.Join(s.dir, "shoudan.yaml")
	require.NoError(t, os.WriteFile(s.cfg, []byte(y), 0o644))
	t.Cleanup(func() { // whatever a failing test left behind
		for _, p := range switchtest.Processes(s.dir) {
			var pid int
			fmt.Sscanf(p, "%d:", &pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return s
}

// failing runs `serve` expecting it to fail, and returns its error line (the last line of
// stderr: before it only the JSON log of what it had started and then stopped).
func (s *serveSetup) failing(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, switchtest.Binary(t), "serve", "-c", s.cfg)
	cmd.Env = append(os.Environ(), "SHOUDAN_DATA_DIR=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	require.Error(t, err, "serve must fail; stdout:\n%s", stdout.String())
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 1, ee.ExitCode(), "a start-up failure exits non-zero")
	assert.NotContains(t, stderr.String(), "panic", "no panic")
	var plain []string
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if !strings.HasPrefix(l, "{") {
			plain = append(plain, l)
		}
	}
	require.Len(t, plain, 1, "exactly one line says what went wrong:\n%s", stderr.String())
	assert.True(t, strings.HasPrefix(plain[0], "shoudan serve: "), plain[0])
	s.nothingLeft(t)
	return plain[0]
}

// nothingLeft checks that no process started for this test's directory still runs (the
// private PostgreSQL above all).
func (s *serveSetup) nothingLeft(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(switchtest.Processes(s.dir)) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	assert.Empty(t, switchtest.Processes(s.dir), "nothing it started is left running")
}

func TestServePortBusy(t *testing.T) {
	s := newServe(t, nil)
	ln, err := net.Listen("tcp", s.prod)
	require.NoError(t, err)
	defer ln.Close()
	_, port, _ := net.SplitHostPort(s.prod)
	line := s.failing(t)
	assert.Contains(t, line, "listeners[0].addr: port "+port+" is already in use")
	assert.Contains(t, line, "move this one to a free port with listeners[0].addr in "+s.cfg)
	_, err = os.Stat(filepath.Join(s.dir, "data", "pg"))
	assert.True(t, os.IsNotExist(err), "a busy port is found before PostgreSQL is created or started")
}

// TestServePortTakenAfterStart: the admin port collides with a listener's, which only the real
// bind finds, after the private PostgreSQL was started: it must be stopped again.
func TestServePortTakenAfterStart(t *testing.T) {
	s := newServe(t, nil)
	y, _ := os.ReadFile(s.cfg)
	require.NoError(t, os.WriteFile(s.cfg, []byte(strings.Replace(string(y), "addr: "+s.adm, "addr: "+s.prod, 1)), 0o644))
	_, port, _ := net.SplitHostPort(s.prod)
	line := s.failing(t)
	assert.Contains(t, line, "admin.addr: port "+port+" is already in use")
	assert.Contains(t, line, "admin.addr in "+s.cfg+" (or SHOUDAN_ADMIN_ADDR)")
	_, err := os.Stat(filepath.Join(s.dir, "data", "pg", "PG_VERSION"))
	require.NoError(t, err, "PostgreSQL had been started")
}

func TestServeSecondInstance(t *testing.T) {
	s := newServe(t, nil)
	first := exec.Command(switchtest.Binary(t), "serve", "-c", s.cfg)
	first.Env = append(os.Environ(), "SHOUDAN_DATA_DIR=")
	out, err := first.StdoutPipe()
	require.NoError(t, err)
	first.Stderr = nil
	require.NoError(t, first.Start())
	t.Cleanup(func() {
		if first.ProcessState == nil {
			_ = first.Process.Kill()
			_ = first.Wait()
		}
	})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "admin http://") {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatal("the first serve did not come up")
	}

	// the second one, on other ports but the same data directory
	y, _ := os.ReadFile(s.cfg)
	other := string(y)
	for _, a := range []string{s.prod, s.test, s.ctl, s.adm} {
		other = strings.Replace(other, a, switchtest.FreePort(t), 1)
	}
	second := filepath.Join(s.dir, "second.yaml")
	require.NoError(t, os.WriteFile(second, []byte(other), 0o644))
	s2 := *s
	s2.cfg = second
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, switchtest.Binary(t), "serve", "-c", second)
	cmd.Env = first.Env
	b, err := cmd.CombinedOutput()
	require.Error(t, err)
	line := strings.TrimSpace(string(b))
	assert.Equal(t, 1, strings.Count(line, "\n")+1, "one line: %s", line)
	assert.Contains(t, line, fmt.Sprintf("is in use by another shoudan serve (pid %d)", first.Process.Pid))
	assert.Contains(t, line, "data_dir in "+second+" (or SHOUDAN_DATA_DIR)")

	// the first keeps serving, and stops cleanly on SIGTERM, PostgreSQL with it
	c, err := net.Dial("tcp", s.prod)
	require.NoError(t, err, "the first switch still listens")
	c.Close()
	require.NoError(t, first.Process.Signal(syscall.SIGTERM))
	require.NoError(t, first.Wait())
	s.nothingLeft(t)
}

func TestServeUnreachableDataDir(t *testing.T) {
	s := newServe(t, nil)
	file := filepath.Join(s.dir, "a-file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	y, _ := os.ReadFile(s.cfg)
	require.NoError(t, os.WriteFile(s.cfg, []byte(strings.Replace(string(y), "data_dir: "+filepath.Join(s.dir, "data"), "data_dir: "+filepath.Join(file, "data"), 1)), 0o644))
	line := s.failing(t)
	assert.Contains(t, line, "data_dir: cannot use "+filepath.Join(file, "data"))
	assert.Contains(t, line, "not a directory")
	assert.Contains(t, line, "data_dir in "+s.cfg+" (or SHOUDAN_DATA_DIR)")
}

func TestServeBadDatabaseURL(t *testing.T) {
	nobody := switchtest.FreePort(t) // nothing listens there
	for _, c := range []struct{ url, want string }{
		{"postgres://shoudan:s3cret@" + nobody + "/journal?connect_timeout=3", "database.url: cannot open the journal at postgres://shoudan:xxxxx@" + nobody + "/journal"},
		{"postgres://shoudan:s3cret@" + nobody + ":notaport/journal", "database.url: cannot open the journal"},
	} {
		s := newServe(t, func(y string) string { return strings.Replace(y, `url: ""`, fmt.Sprintf("url: %q", c.url), 1) })
		line := s.failing(t)
		assert.Contains(t, line, c.want)
		assert.Contains(t, line, "database.url in "+s.cfg+" (or SHOUDAN_DATABASE_URL)")
		assert.NotContains(t, line, "s3cret", "the password is never shown")
	}
}
