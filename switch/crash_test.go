package posswitch_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shoudan/shoudan/issuerlink/sim"
	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/spec/pos"
	"github.com/shoudan/shoudan/switch/app"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals"
	"github.com/shoudan/shoudan/terminals/device"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// buildShoudan compiles the binary once per test run.
func buildShoudan(t *testing.T) string {
	dir := switchtest.TempDir(t)
	bin := filepath.Join(dir, "shoudan")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/shoudan/shoudan/cmd/shoudan").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// crashTerminal is one terminal of the load: it behaves like a real one across switch crashes:
// it keeps its keys, batch and STAN, clears a pending reversal before anything else, and signs
// on again when told to.
type crashTerminal struct {
	cfg      device.Config
	state    device.State
	dev      *device.Terminal
	pending  *device.Result // a purchase without a definite answer: must be reversed
	approved []approval
	signed   bool
	// forgetful terminals never reverse (as if power-cycled): only the switch's recovery and
	// store-and-forward can undo what they left at the issuer
	forgetful bool
	// hasPending mirrors pending != nil for the test's goroutine
	hasPending atomic.Bool
	// card defaults to good; observe, when set, hears of every purchase and reversal exchange;
	// reverseShare is the share of approved purchases the terminal reverses itself (as after a
	// printer fault)
	card         *device.Card
	observe      func(kind string, start time.Time, took time.Duration, code string, err error)
	reverseShare float64
}

type approval struct {
	rrn    string
	amount int64
}

func (c *crashTerminal) conn(addr string) bool {
	if c.dev != nil {
		return true
	}
	d, err := device.Dial(addr, c.cfg)
	if err != nil {
		return false
	}
	d.Timeout = 3 * time.Second
	if c.cfg.Timeout > 0 {
		d.Timeout = c.cfg.Timeout
	}
	d.State = c.state
	c.dev = d
	return true
}

func (c *crashTerminal) drop() {
	if c.dev != nil {
		c.state = c.dev.State
		c.dev.Close()
		c.dev = nil
	}
}

// step does one thing: sign on, clear the pending reversal, or one purchase.
func (c *crashTerminal) step(addr string) {
	if c.pending != nil {
		c.hasPending.Store(true)
	}
	if !c.conn(addr) {
		time.Sleep(20 * time.Millisecond)
		return
	}
	defer func() {
		if c.dev != nil {
			c.state = c.dev.State
		}
	}()
	switch {
	case !c.signed:
		r, err := c.dev.SignOn()
		if err != nil {
			c.drop()
			return
		}
		c.signed = r.Code() == rc.Approved
	case c.pending != nil:
		start := time.Now()
		r, err := c.dev.Reversal(c.pending, "98")
		c.seen("reversal", start, r, err)
		if err != nil {
			c.drop()
			return
		}
		if r.Code() == rc.Approved {
			c.pending = nil
			c.hasPending.Store(false)
		}
	default:
		card := good
		if c.card != nil {
			card = *c.card
		}
		req, err := c.dev.PurchaseRequest(card, 1+rand.Int64N(1000))
		if err != nil {
			return
		}
		start := time.Now()
		r, err := c.dev.Exchange(pos.Purchase, req)
		c.seen("purchase", start, r, err)
		if err != nil { // no definite answer: reverse it before anything else
			if !c.forgetful {
				c.pending = &device.Result{Sent: req}
			}
			c.drop()
			return
		}
		switch r.Code() {
		case rc.Approved:
			if c.reverseShare > 0 && rand.Float64() < c.reverseShare {
				c.pending = r
				break
			}
			c.approved = append(c.approved, approval{r.Resp.RRN, req.Amount})
		case rc.IssuerTimeout:
			if !c.forgetful {
				c.pending = r
			}
		case rc.SignOnAgain:
			c.signed = false
		}
	}
	c.hasPending.Store(c.pending != nil)
}

func (c *crashTerminal) seen(kind string, start time.Time, r *device.Result, err error) {
	if c.observe == nil {
		return
	}
	code := ""
	if r != nil {
		code = r.Code()
	}
	c.observe(kind, start, time.Since(start), code, err)
}

// runner runs the shoudan binary against the test's database and an issuer in the test process.
type runner struct {
	t      *testing.T
	bin    string
	cfg    string
	dir    string
	prod   string
	url    string
	issuer *sim.Server
	logf   *os.File
}

func newRunner(t *testing.T, faults sim.Faults) (*runner, *terminals.Registry) {
	bin := buildShoudan(t)
	url := switchtest.Database(t)
	c, reg, err := app.Parse(app.Demo)
	require.NoError(t, err)
	is, err := c.Issuer.Sim.Build()
	require.NoError(t, err)
	issuer := sim.NewServer(is, faults, slog.New(slog.DiscardHandler))
	require.NoError(t, issuer.Start("127.0.0.1:0", "127.0.0.1:0"))
	t.Cleanup(func() { issuer.Close(context.Background()) })
	prod, test := freePort(t), freePort(t)
	y := string(app.Demo)
	for _, r := range [][2]string{
		{"addr: 127.0.0.1:5000", "addr: " + prod},
		{"addr: 127.0.0.1:5001", "addr: " + test},
		{"addr: 127.0.0.1:9100", "addr: 127.0.0.1:0"},
		{"addr: 127.0.0.1:8080", "addr: 127.0.0.1:0"},
		{"addr: 127.0.0.1:9200", "addr: 127.0.0.1:0"},
		{`url: ""`, fmt.Sprintf("url: %q", url)},
		{"addrs: []", fmt.Sprintf("addrs: [%q]", issuer.Addr)},
		{"timeout: 3s", "timeout: 500ms"},
	} {
		require.Contains(t, y, r[0])
		y = strings.Replace(y, r[0], r[1], 1)
	}
	dir := switchtest.TempDir(t)
	cfg := filepath.Join(dir, "shoudan.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(y), 0o644))
	logf, err := os.Create(filepath.Join(os.TempDir(), "shoudan-"+t.Name()+".log"))
	require.NoError(t, err)
	t.Cleanup(func() {
		logf.Close()
		if t.Failed() {
			t.Logf("the switch's log: %s", logf.Name())
		} else {
			os.Remove(logf.Name()) // kept only when it explains a failure
		}
	})
	return &runner{t: t, bin: bin, cfg: cfg, dir: dir, prod: prod, url: url, issuer: issuer, logf: logf}, reg
}

// start runs the switch and waits until it accepts terminals.
func (r *runner) start() *exec.Cmd {
	cmd := exec.Command(r.bin, "serve", "-c", r.cfg)
	cmd.Stdout, cmd.Stderr = r.logf, r.logf
	cmd.Env = append(os.Environ(), "SHOUDAN_DATA_DIR="+r.dir)
	require.NoError(r.t, cmd.Start())
	r.t.Cleanup(func() { // a failing test must not leave a switch running
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	eventually(r.t, 20*time.Second, "the switch listens", func() bool {
		c, err := net.Dial("tcp", r.prod)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return cmd
}

// settle waits until every terminal has cleared its pending reversal, stops the load, and waits
// until the reversal queue is empty; it returns the pool it watched the queue with.
func (r *runner) settle(terms []*crashTerminal, stop *atomic.Bool, wg *sync.WaitGroup, within time.Duration) *pgxpool.Pool {
	r.t.Helper()
	eventually(r.t, within, "every terminal cleared its pending reversal", func() bool {
		for _, ct := range terms {
			if ct.hasPending.Load() {
				return false
			}
		}
		return true
	})
	stop.Store(true)
	wg.Wait()
	pool := r.pool()
	eventually(r.t, within, "the reversal queue drains", func() bool { return queued(pool) == 0 })
	return pool
}

func (r *runner) pool() *pgxpool.Pool {
	pool, err := pgxpool.New(context.Background(), r.url)
	require.NoError(r.t, err)
	r.t.Cleanup(pool.Close)
	return pool
}

func queued(pool *pgxpool.Pool) int {
	var n int
	_ = pool.QueryRow(context.Background(), "SELECT count(*) FROM saf WHERE acked_at IS NULL AND next_at < 'infinity'").Scan(&n)
	return n
}

// TestCrashRecovery kills the switch with SIGKILL at random moments under load from many
// terminals, 20 times, and checks after each run of crashes that every approval a terminal saw is
// journaled as approved, that every purchase the issuer still holds is journaled as approved (and
// nothing else is held), and that no reversal was applied twice.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and kills it 20 times")
	}
	r, reg := newRunner(t, sim.Faults{LatencyMinMS: 0, LatencyMaxMS: 3})
	issuer, prod, start := r.issuer, r.prod, r.start
	var terms []*crashTerminal
	for _, tid := range []string{"10000001", "10000007", "10000008", "10000009", "10000005"} {
		for _, rt := range reg.Terminals() {
			if rt.TID == tid {
				terms = append(terms, &crashTerminal{cfg: device.Config{TID: tid, MID: rt.MID, Serial: rt.Serial, TMK: device.TMKOf(rt.DemoTMK), Timeout: 3 * time.Second}, state: device.State{Batch: "000000"}})
			}
		}
	}
	require.Len(t, terms, 5)
	for i := range terms {
		terms[i].forgetful = i%2 == 1
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for _, ct := range terms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				ct.step(prod)
			}
			ct.drop()
		}()
	}

	const kills = 20
	for i := 0; i < kills; i++ {
		cmd := start()
		time.Sleep(time.Duration(150+rand.IntN(350)) * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
	}
	cmd := start() // the last start recovers and forwards; the terminals clear their reversals
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	pool := r.settle(terms, &stop, &wg, 30*time.Second)
	ctx := context.Background()

	// 1. every approval a terminal saw is journaled as approved
	total := 0
	for _, ct := range terms {
		for _, a := range ct.approved {
			var state, code string
			var amount int64
			err := pool.QueryRow(ctx, "SELECT state, resp_code, amount FROM txn WHERE rrn=$1 AND kind='purchase'", a.rrn).Scan(&state, &code, &amount)
			require.NoError(t, err, "approval RRN %s is not in the journal", a.rrn)
			assert.Equal(t, "A", state, "RRN %s", a.rrn)
			assert.Equal(t, "00", code)
			assert.Equal(t, a.amount, amount)
			total++
		}
	}
	require.Greater(t, total, 20, "the load produced approvals between the kills")

	snap, held := assertMoney(t, pool, issuer)
	t.Logf("%d kills; %d approvals seen by terminals; issuer: %d auths, %d held, %d reversal repeats answered idempotently",
		kills, total, len(snap.Auths), held, snap.ReversalsRepeat)
}

// assertMoney checks the issuer's books against the journal: every purchase the issuer still
// holds is journaled as approved and every approved purchase is held (so the held amount is the
// journal's), and no reversal was applied twice. It returns the ledger and the count held.
func assertMoney(t *testing.T, pool *pgxpool.Pool, issuer *sim.Server) (sim.Snapshot, int) {
	t.Helper()
	ctx := context.Background()
	// what the issuer still holds is exactly what the journal has approved
	rows, err := pool.Query(ctx, "SELECT '0200' || up_trace || up_time FROM txn WHERE kind='purchase' AND state='A'")
	require.NoError(t, err)
	approvedKeys := map[string]bool{}
	for rows.Next() {
		var k string
		require.NoError(t, rows.Scan(&k))
		approvedKeys[k] = true
	}
	require.NoError(t, rows.Err())
	snap := issuer.Issuer.Ledger.Snapshot()
	held := map[string]bool{}
	for _, a := range snap.Auths {
		if a.Kind == "purchase" && a.State == "approved" {
			held[a.Key[:20]] = true
			assert.True(t, approvedKeys[a.Key[:20]], "the issuer holds %s, which the journal does not have as approved", a.Key)
		}
	}
	for k := range approvedKeys {
		assert.True(t, held[k], "journal approval %s is not charged at the issuer", k)
	}
	// no reversal applied twice
	assert.Equal(t, 0, snap.ReversalsTwice)
	var journalAmount int64
	require.NoError(t, pool.QueryRow(ctx, "SELECT coalesce(sum(amount), 0) FROM txn WHERE kind='purchase' AND state='A'").Scan(&journalAmount))
	assert.Equal(t, journalAmount, snap.Held, "the issuer's held amount equals the journal's approved purchases")
	return snap, len(held)
}

// TestRestartDeliversQueuedReversals: reversals queued while the issuer does not answer them
// survive a SIGKILL of the switch and are delivered after the restart, once each.
func TestRestartDeliversQueuedReversals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	r, reg := newRunner(t, sim.Faults{SwallowNext: 3, DownReversals: true})
	cmd := r.start()
	term := reg.Terminal("10000001", "898310058120001")
	d, err := device.Dial(r.prod, device.Config{TID: term.TID, MID: term.MID, Serial: term.Serial, TMK: device.TMKOf(term.DemoTMK)})
	require.NoError(t, err)
	defer d.Close()
	so, err := d.SignOn()
	require.Equal(t, rc.Approved, code(t, so, err))
	for i := 0; i < 3; i++ {
		p, err := d.Purchase(good, 1000)
		require.Equal(t, rc.IssuerTimeout, code(t, p, err))
	}
	pool := r.pool()
	require.Equal(t, 3, queued(pool))
	eventually(t, 5*time.Second, "the forwarder tries", func() bool { return r.issuer.Received()["0420"] > 0 })
	require.Equal(t, int64(3000), r.issuer.Issuer.Ledger.Snapshot().Held)

	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	r.issuer.SetFaults(sim.Faults{}) // the issuer answers reversals again
	cmd = r.start()
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	eventually(t, 20*time.Second, "the queued reversals are delivered after the restart", func() bool { return queued(pool) == 0 })
	snap := r.issuer.Issuer.Ledger.Snapshot()
	assert.Equal(t, int64(0), snap.Held)
	assert.Equal(t, 0, snap.ReversalsTwice)
	assert.Equal(t, 0, snap.ReversalsRepeat, "each delivered once")
	for _, a := range snap.Auths {
		assert.Equal(t, 1, a.Reversals, "auth %s reversed exactly once", a.Key)
	}
}

// TestRecoveryFindsPendingBelowLaterTraffic: recovery reads pending rows from the floor the
// switch records (journal_floor), not through an index on state. A purchase left at the issuer
// while later purchases of another terminal commit, and a floor write happens, must still be
// found after a SIGKILL: reversed, not left pending.
func TestRecoveryFindsPendingBelowLaterTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	r, reg := newRunner(t, sim.Faults{})
	y, err := os.ReadFile(r.cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(r.cfg, []byte(strings.Replace(string(y), "timeout: 500ms", "timeout: 20s", 1)), 0o644))
	cmd := r.start()
	dial := func(tid string) *device.Terminal {
		var term *terminals.Terminal
		for _, x := range reg.Terminals() {
			if x.TID == tid {
				term = x
			}
		}
		require.NotNil(t, term, tid)
		d, err := device.Dial(r.prod, device.Config{TID: term.TID, MID: term.MID, Serial: term.Serial, TMK: device.TMKOf(term.DemoTMK), Timeout: 30 * time.Second})
		require.NoError(t, err)
		t.Cleanup(func() { d.Close() })
		so, err := d.SignOn()
		require.Equal(t, rc.Approved, code(t, so, err))
		return d
	}
	stuck, busy := dial("10000001"), dial(terminals.LoadTID(0))

	r.issuer.SetFaults(sim.Faults{SwallowNext: 1}) // the next purchase reaches the issuer and is never answered
	go func() { _, _ = stuck.Purchase(good, 4200) }()
	eventually(t, 5*time.Second, "the purchase is at the issuer", func() bool { return r.issuer.Received()["0200"] > 0 })
	for range 3 { // later rows, with larger ids, finish
		p, err := busy.Purchase(good, 100)
		require.Equal(t, rc.Approved, code(t, p, err))
	}
	pool := r.pool()
	var pendingID int64
	require.NoError(t, pool.QueryRow(context.Background(), "SELECT id FROM txn WHERE tid='10000001' AND kind='purchase' AND state='P'").Scan(&pendingID))
	eventually(t, 10*time.Second, "the switch records its floor", func() bool {
		var n int
		_ = pool.QueryRow(context.Background(), "SELECT count(*) FROM journal_floor WHERE at > now() - interval '1 second'").Scan(&n)
		return n > 0
	})
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()

	cmd = r.start()
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	var state string
	require.NoError(t, pool.QueryRow(context.Background(), "SELECT state FROM txn WHERE id=$1", pendingID).Scan(&state))
	assert.Equal(t, "T", state, "recovery closed the purchase left at the issuer")
	eventually(t, 20*time.Second, "its reversal is delivered", func() bool { return queued(pool) == 0 && r.issuer.Issuer.Ledger.Snapshot().Held == 300 })
}
