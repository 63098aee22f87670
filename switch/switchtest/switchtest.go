// Package switchtest starts real switches for tests: a throwaway PostgreSQL (the same private
// instance mechanism `shoudan serve` uses), one fresh database per switch, the simulated issuer on
// real sockets, and simulated terminals that sign on and MAC like real ones. Nothing is mocked.
package switchtest

import (
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/switch/app"
	"github.com/shoudan/shoudan/switch/hsm"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/journal/pginstance"
	"github.com/shoudan/shoudan/terminals"
	"github.com/shoudan/shoudan/terminals/device"
)

var shared struct {
	once sync.Once
	in   *pginstance.Instance
	dir  string
	err  error
	n    atomic.Int64
}

// TempDir is a directory the postgres OS user can enter (t.TempDir's parents are 0700 as root).
func TempDir(t testing.TB) string {
	dir, err := os.MkdirTemp("", "shoudan-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Main runs a package's tests and stops the shared PostgreSQL afterwards: call it from TestMain.
// after runs first (e.g. to stop a shared browser). Test servers are sized for 2 GB of memory
// (512 MB of shared buffers), not for the machine: several test packages (and crash-test
// switches) run their own at once.
func Main(m *testing.M, after ...func()) {
	if os.Getenv("SHOUDAN_PG_MEMORY") == "" {
		os.Setenv("SHOUDAN_PG_MEMORY", "2GB")
	}
	code := m.Run()
	for _, f := range after {
		f()
	}
	if binary.dir != "" {
		os.RemoveAll(binary.dir)
	}
	if tokens.dir != "" {
		os.RemoveAll(tokens.dir)
	}
	if shared.in != nil {
		_ = shared.in.Stop()
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// Postgres starts a private PostgreSQL in dir (the caller owns it, e.g. to kill it).
func Postgres(t testing.TB, dir string) *pginstance.Instance {
	in, err := pginstance.Start(context.Background(), dir)
	if err != nil {
		t.Fatalf("private PostgreSQL: %v", err)
	}
	return in
}

// Database creates a fresh database on the package's shared PostgreSQL and returns its URL.
func Database(t testing.TB) string {
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "shoudan-pg-")
		if shared.err == nil {
			shared.err = os.Chmod(shared.dir, 0o755)
		}
		if shared.err == nil {
			shared.in, shared.err = pginstance.Start(context.Background(), shared.dir)
		}
	})
	if shared.err != nil {
		t.Fatalf("shared PostgreSQL: %v", shared.err)
	}
	return NewDatabase(t, shared.in.URL())
}

// Journal opens a journal on a fresh database (Database) with a random key, closed when the test
// ends.
func Journal(t testing.TB) *journal.Journal {
	t.Helper()
	key := make([]byte, 32)
	crand.Read(key)
	v, err := journal.NewVault(key)
	if err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(context.Background(), Database(t), v)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Close)
	return j
}

// NewDatabase creates a fresh database on the server at url.
func NewDatabase(t testing.TB, url string) string {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	name := fmt.Sprintf("t%d_%d", os.Getpid(), shared.n.Add(1))
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	return strings.Replace(url, "dbname=postgres", "dbname="+name, 1)
}

var tokens struct {
	once   sync.Once
	dir    string
	module string
	err    error
}

// Token initialises a fresh SoftHSM2 token for one test switch on the package's shared token
// directory (SoftHSM reads its config once per process, so a test process shares one directory
// the way its switches share one PostgreSQL) and returns the config that opens it.
func Token(t testing.TB) app.HSMConfig {
	tokens.once.Do(func() {
		if tokens.module, tokens.err = hsm.SoftHSMModule(); tokens.err != nil {
			return
		}
		if tokens.dir, tokens.err = os.MkdirTemp("", "shoudan-hsm-"); tokens.err != nil {
			return
		}
		conf := tokens.dir + "/softhsm2.conf"
		_ = os.Mkdir(tokens.dir+"/tokens", 0o700)
		tokens.err = os.WriteFile(conf, []byte("directories.tokendir = "+tokens.dir+"/tokens\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600)
		if tokens.err == nil {
			tokens.err = os.Setenv("SOFTHSM2_CONF", conf)
		}
	})
	if tokens.err != nil {
		t.Fatalf("test security module: %v", tokens.err)
	}
	label := fmt.Sprintf("t%d_%d", os.Getpid(), shared.n.Add(1))
	pin := fmt.Sprintf("pin-%d", shared.n.Add(1))
	if err := hsm.InitToken(tokens.module, label, "so-"+pin, pin); err != nil {
		t.Fatalf("test security module: %v", err)
	}
	return app.HSMConfig{Module: tokens.module, Token: label, PIN: pin}
}

// TokenDir is the package's shared SoftHSM2 token directory ("" before the first Token).
func TokenDir() string { return tokens.dir }

// Options shape a test switch.
type Options struct {
	// Edit rewrites the demo config's YAML before it is loaded (add merchants, change rules).
	Edit func(yaml string) string
	// DatabaseURL: "" = a fresh database on the shared instance.
	DatabaseURL string
	// IssuerTimeout defaults to 1s.
	IssuerTimeout time.Duration
	// Peer makes this switch another node of the same deployment as Peer: the same journal
	// database and the same journal key (a deployment shares journal.key between its nodes).
	Peer *Switch
	// Log receives the switch's log (default: discarded; tests that scan logs set it).
	Log io.Writer
}

// Switch is a running test switch.
type Switch struct {
	*app.App
	t     testing.TB
	mu    sync.Mutex
	stans map[string]int
}

// Config returns the demo config with the test's edits, listeners and issuer on free ports.
func Config(t testing.TB, o Options) string {
	y := string(app.Demo)
	for _, r := range [][2]string{
		{"addr: 127.0.0.1:5000", "addr: 127.0.0.1:0"},
		{"addr: 127.0.0.1:5001", "addr: 127.0.0.1:0"},
		{"control: 127.0.0.1:5080", "control: 127.0.0.1:0"},
		{"addr: 127.0.0.1:9100", "addr: 127.0.0.1:0"},
		{"addr: 127.0.0.1:8080", "addr: 127.0.0.1:0"},
		{"addr: 127.0.0.1:9200", "addr: 127.0.0.1:0"},
	} {
		y = strings.Replace(y, r[0], r[1], 1)
	}
	if o.Edit != nil {
		y = o.Edit(y)
	}
	return y
}

// Start runs a switch on the demo config (with o's edits) until the test ends. In the last 90 s
// of a day it first waits for the next: a test's purchase and its void, reversal or status query
// must share a business day, which the real clock does not promise across midnight.
func Start(t testing.TB, o Options) *Switch {
	t.Helper()
	AwayFromMidnight(t, 90*time.Second)
	y := Config(t, o)
	dir := TempDir(t)
	path := dir + "/shoudan.yaml"
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	c, reg, err := app.Load(path)
	if err != nil {
		t.Fatalf("test config: %v", err)
	}
	c.DataDir = dir
	c.Database.URL = o.DatabaseURL
	if c.HSM.Module == "" {
		c.HSM = Token(t)
	}
	if o.Peer != nil {
		c.HSM = o.Peer.Config.HSM // the nodes of a deployment share one security module (its KEK)
		c.Database.URL = o.Peer.Config.Database.URL
		key, err := os.ReadFile(o.Peer.Config.DataDir + "/journal.key")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dir+"/journal.key", key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if c.Database.URL == "" {
		c.Database.URL = Database(t)
	}
	c.Issuer.Timeout = o.IssuerTimeout
	if c.Issuer.Timeout == 0 {
		c.Issuer.Timeout = time.Second
	}
	w := o.Log
	if w == nil {
		w = io.Discard
	}
	a, err := app.Start(context.Background(), c, reg, slog.New(slog.NewJSONHandler(w, nil)))
	if err != nil {
		t.Fatalf("switch: %v", err)
	}
	if err := a.Watch(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !a.Link.Up() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.Close(ctx)
	})
	return &Switch{App: a, t: t, stans: map[string]int{}}
}

// DemoTMK is the demo terminals' master key.
var DemoTMK = device.DemoTMK

// Terminal connects registered terminal tid to the listener of its environment (or env when
// given), not signed on.
func (s *Switch) Terminal(tid string, env ...terminals.Environment) *device.Terminal {
	s.t.Helper()
	d, err := s.DialTerminal(tid, nil, env...)
	if err != nil {
		s.t.Fatal(err)
	}
	return d
}

// DialTerminal is Terminal over TLS (tc; nil = plain TCP), returning the dial error.
func (s *Switch) DialTerminal(tid string, tc *tls.Config, env ...terminals.Environment) (*device.Terminal, error) {
	s.t.Helper()
	var term *terminals.Terminal
	for _, x := range s.Registry.Get().Terminals() {
		if x.TID == tid {
			term = x
		}
	}
	cfg := device.Config{TID: tid, MID: "898310058120001", Serial: "SN-UNKNOWN", TMK: DemoTMK, Timeout: 10 * time.Second, TLS: tc}
	e := terminals.Production
	if term != nil {
		cfg.MID, cfg.Serial, cfg.TMK, e = term.MID, term.Serial, device.TMKOf(term.DemoTMK), term.Env
	}
	if len(env) > 0 {
		e = env[0]
	}
	d, err := device.Dial(s.Addr(e), cfg)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	d.STAN = s.stans[tid] // a terminal's STAN outlives its connection: each connection gets its own range
	s.stans[tid] += 10000
	s.mu.Unlock()
	s.t.Cleanup(func() { d.Close() })
	return d, nil
}

// SignedOn is Terminal followed by a successful sign-on.
func (s *Switch) SignedOn(tid string) *device.Terminal {
	s.t.Helper()
	d := s.Terminal(tid)
	r, err := d.SignOn()
	if err != nil || r.Code() != rc.Approved {
		s.t.Fatalf("sign-on of %s: %v %v", tid, err, r)
	}
	return d
}

var binary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Binary builds the shoudan command once per test binary and returns its path (removed by Main).
func Binary(t testing.TB) string {
	t.Helper()
	binary.once.Do(func() {
		if binary.dir, binary.err = os.MkdirTemp("", "shoudan-bin-"); binary.err != nil {
			return
		}
		_ = os.Chmod(binary.dir, 0o755)
		binary.path = binary.dir + "/shoudan"
		out, err := exec.Command("go", "build", "-o", binary.path, "github.com/shoudan/shoudan/cmd/shoudan").CombinedOutput()
		if err != nil {
			binary.err = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

// FreePort returns a loopback address with a port free at the time of the call.
//
// The port is drawn below the kernel's ephemeral range (32768-60999 on Linux): a port the kernel
// handed out for :0 and took back was soon handed to another test process's :0 listener or
// outgoing connection (the suite runs packages in parallel) before this test bound it.
func FreePort(t testing.TB) string {
	t.Helper()
	for range 200 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		l.Close()
		return addr
	}
	t.Fatal("no free port in 20000-31999 on 127.0.0.1")
	return ""
}

// Processes lists the running processes whose command line mentions s (e.g. a test's data
// directory: a PostgreSQL or a switch a test left behind), as "pid: command line".
func Processes(s string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(b) == 0 {
			continue
		}
		cmd := strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
		if strings.Contains(cmd, s) {
			if st, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil && strings.Contains(string(st), ") Z ") {
				continue // a zombie is not running
			}
			out = append(out, fmt.Sprintf("%d: %s", pid, cmd))
		}
	}
	return out
}

// AwayFromMidnight waits, when the local day ends within d, until the next day has begun: a test
// whose steps must share a business day (a void finds only today's purchase) cannot then straddle
// midnight on the real clock.
func AwayFromMidnight(t testing.TB, d time.Duration) {
	t.Helper()
	y, m, dd := time.Now().Date()
	next := time.Date(y, m, dd+1, 0, 0, 0, 0, time.Local)
	if left := time.Until(next); left < d {
		t.Logf("%s to midnight: waiting for the next day, so that the test's steps share one", left.Round(time.Second))
		time.Sleep(left + time.Second)
	}
}
