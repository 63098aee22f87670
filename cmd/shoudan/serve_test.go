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
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mattn/go-runewidth"
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
		{"addr: 127.0.0.1:9200", "addr: 127.0.0.1:0"},
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

// TestFirstHour runs what a new user does after `serve`: purchases and declines through `pos`
// (exit status, yuan, the switch's reason), a void, a refund of an original made "days ago" on
// the test environment, settlement with the terminal's own totals and a new batch; the state
// file keeps no PAN or key in clear; the read-only tools work while the config file is invalid,
// and run elsewhere they say where they looked and create nothing.
func TestFirstHour(t *testing.T) {
	switchtest.AwayFromMidnight(t, 2*time.Minute) // a void finds only today's purchase
	s := newServe(t, nil)
	srv := exec.Command(switchtest.Binary(t), "serve", "-c", s.cfg)
	srv.Env = append(os.Environ(), "SHOUDAN_DATA_DIR=")
	out, err := srv.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	t.Cleanup(func() {
		if srv.ProcessState == nil {
			_ = srv.Process.Kill()
			_ = srv.Wait()
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
		t.Fatal("serve did not come up")
	}
	run := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(switchtest.Binary(t), append([]string{"-c", s.cfg}, args...)...)
		cmd.Dir = s.dir
		b, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		return string(b), code
	}
	o, code := run("pos", "purchase", "--amount", "12.34")
	require.Equal(t, 0, code, o)
	assert.Contains(t, o, "amount 12.34 yuan")
	assert.Contains(t, o, "000000001234 (12.34 yuan)", "F4 as on the wire and in yuan")
	assert.Regexp(t, `switch: issuer answered Approved \(rule issuer\), RRN \d{12}`, o)
	if m := regexp.MustCompile(`RRN (\d{12})`).FindStringSubmatch(o); assert.NotNil(t, m, o) {
		o, code = run("explain", m[1])
		require.Equal(t, 0, code, o)
		assert.Regexp(t, `issuer route default, via its primary endpoint 127\.0\.0\.1:\d+`, o, "explain names the issuer route taken")
		// an RRN carries no date: other days are looked at only when asked for
		o, code = run("explain", m[1], "--from", "2020-01-01", "--to", "2020-01-31")
		assert.NotEqual(t, 0, code)
		assert.Contains(t, o, "no transaction with RRN "+m[1]+" journaled from 2020-01-01 to 2020-01-31", o)
		o, code = run("explain", m[1], "--from", time.Now().AddDate(0, 0, -1).Format("2006-01-02"))
		require.Equal(t, 0, code, o)
		assert.Contains(t, o, "issuer route default")
	}
	for _, bad := range []string{"12.345", "1e2", "0", "-5"} {
		o, code = run("pos", "purchase", "--amount", bad)
		assert.Equal(t, 1, code, o)
		assert.Contains(t, o, "--amount: expected", bad)
	}
	o, code = run("pos", "foo")
	assert.Equal(t, 1, code)
	assert.Contains(t, o, `unknown transaction type "foo"`)
	assert.NotContains(t, o, "signed on", "rejected before signing on")

	o, code = run("pos", "purchase", "--tid", "10000003", "--amount", "5")
	assert.Equal(t, 2, code, "a decline exits 2: %s", o)
	assert.Contains(t, o, "95  调节控制错 / Reconcile error")
	assert.Contains(t, o, "switch: MCC 6011 is on the cash / quasi-cash list")
	o, code = run("pos", "purchase", "--entry", "tap", "--pin", "", "--amount", "1200.00")
	assert.Equal(t, 2, code, o)
	assert.Contains(t, o, "over the no-PIN limit 1000.00")

	o, code = run("pos", "void")
	require.Equal(t, 0, code, o)
	o, code = run("pos", "purchase", "--amount", "50")
	require.Equal(t, 0, code, o)
	o, code = run("pos", "balance")
	require.Equal(t, 0, code, o)
	assert.Regexp(t, `54\s+balance\s+\d+\.\d\d yuan`, o, "F54 decoded")

	// the refund flow of the README
	o, code = run("pos", "purchase", "--tid", "20000001", "--days-ago", "3", "--amount", "30.00")
	require.Equal(t, 0, code, o)
	assert.Contains(t, o, "13      Local date                    "+time.Now().AddDate(0, 0, -3).Format("0102"))
	o, code = run("pos", "refund", "--tid", "20000001", "--amount", "10.00")
	require.Equal(t, 0, code, o)
	assert.Contains(t, o, "0230 00")
	o, code = run("pos", "purchase", "--days-ago", "3")
	assert.Equal(t, 1, code)
	assert.Contains(t, o, "only on the test environment")

	// settlement: the terminal's own totals balance, and the next batch opens
	o, code = run("pos", "settle")
	require.Equal(t, 0, code, o)
	assert.Contains(t, o, "debits 1 for 50.00 yuan, credits 1 for 12.34 yuan")
	assert.Contains(t, o, "settled: balanced")
	assert.Regexp(t, `signed on again: batch \d{6} open`, o)

	state, err := os.ReadFile(filepath.Join(s.dir, "data", "pos", "10000001.json"))
	require.NoError(t, err)
	assert.NotContains(t, string(state), "6222021234567890123", "no full PAN in the state file")
	assert.NotContains(t, string(state), `"TAK"`, "no working key in clear")
	assert.Contains(t, string(state), "keys_under_tmk")

	o, code = run("txn", "summary", "--by", "merchant")
	require.Equal(t, 0, code, o)
	assert.Contains(t, o, "演示餐厅")
	o, code = run("terminals", "list")
	require.Equal(t, 0, code, o)
	col := func(name string) int { // display column where a merchant's English name starts
		for _, l := range strings.Split(o, "\n") {
			if i := strings.Index(l, name); i > 0 {
				return runewidth.StringWidth(l[:i])
			}
		}
		t.Fatalf("%s not listed:\n%s", name, o)
		return 0
	}
	assert.Equal(t, col("Demo Restaurant"), col("Demo Cash Point"), "aligned by display width")
	assert.Equal(t, col("Demo Restaurant"), col("QPS Pending Cafe"))
	assert.Contains(t, o, "90000001..90012000", "the generated load terminals are one line")
	assert.Less(t, strings.Count(o, "\n"), 40, "the demo terminals are not buried")
	o, code = run("txn", "--limit", "2")
	require.Equal(t, 0, code, o)
	assert.Regexp(t, `2 of \d+ shown \(newest first`, o)

	// an invalid config file: the tools go on with the copy the switch applied, and say so
	good, _ := os.ReadFile(s.cfg)
	require.NoError(t, os.WriteFile(s.cfg, []byte(strings.Replace(string(good), `qps_limit: "1000.00"`, `qps_limit: "lots"`, 1)), 0o644))
	o, code = run("txn", "--limit", "1")
	assert.Equal(t, 0, code, o)
	assert.Contains(t, o, "using the config the running switch last applied")
	require.NoError(t, os.WriteFile(s.cfg, good, 0o644))

	// run from another folder without -c: where it looked, and nothing created
	elsewhere := switchtest.TempDir(t)
	cmd := exec.Command(switchtest.Binary(t), "txn")
	cmd.Dir = elsewhere
	cmd.Env = append(os.Environ(), "SHOUDAN_DATA_DIR=")
	b, err := cmd.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(b), "no config at "+filepath.Join(elsewhere, "data", "shoudan.yaml"))
	_, err = os.Stat(filepath.Join(elsewhere, "data"))
	assert.True(t, os.IsNotExist(err), "a read-only tool creates no ./data")

	// pos load stopped with Ctrl-C still reports
	load := exec.Command(switchtest.Binary(t), "-c", s.cfg, "pos", "load", "--terminals", "4", "--rate", "50", "--duration", "60s", "--quiet")
	var lout, lerr bytes.Buffer
	load.Stdout, load.Stderr = &lout, &lerr
	require.NoError(t, load.Start())
	time.Sleep(3 * time.Second)
	require.NoError(t, load.Process.Signal(os.Interrupt))
	require.NoError(t, load.Wait(), "stderr: %s", lerr.String())
	assert.Contains(t, lerr.String(), "interrupted after")
	assert.Regexp(t, `(?i)p99`, lout.String(), "the report: %s", lout.String())

	require.NoError(t, srv.Process.Signal(syscall.SIGTERM))
	require.NoError(t, srv.Wait())
	s.nothingLeft(t)
}
