package posswitch_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoudan/shoudan/issuerlink/sim"
	rc "github.com/shoudan/shoudan/responsecodes"
	posswitch "github.com/shoudan/shoudan/switch"
	"github.com/shoudan/shoudan/switch/app"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals"
	"github.com/shoudan/shoudan/terminals/device"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var loadCard = device.Chip("6222020000000000001", "2912", "123456") // the demo's bottomless card

// demoIssuer builds a simulated issuer with the demo's cards and limits, listening on addr
// ("127.0.0.1:0" for a free port), its books shared with every other server of is (nil = new).
func demoIssuer(t *testing.T, is *sim.Issuer, addr string) *sim.Server {
	t.Helper()
	if is == nil {
		c, _, err := app.Parse(app.Demo)
		require.NoError(t, err)
		is, err = c.Issuer.Sim.Build()
		require.NoError(t, err)
	}
	s := sim.NewServer(is, sim.Faults{}, slog.New(slog.DiscardHandler))
	require.NoError(t, s.Start(addr, "127.0.0.1:0"))
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// codes counts answers by response code.
type codes struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *codes) add(code string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[code]++
}

func (c *codes) get(code string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[code]
}

func (c *codes) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.n {
		n += v
	}
	return n
}

// load runs purchases of the load card from n load terminals until stop is closed.
func load(t *testing.T, s *switchtest.Switch, n int, stop <-chan struct{}, got *codes) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i := range n {
		d := s.SignedOn(terminals.LoadTID(i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := d.Purchase(loadCard, 100)
				if err != nil {
					got.add("no answer")
					return
				}
				got.add(r.Code())
			}
		}()
	}
	return &wg
}

// TestDroppedConnections: the issuer closes the connection on 1% of the requests it reads
// (before processing them) and answers everything else: the link replaces each dropped
// connection at once and keeps the others serving, so at least 98% of the purchases are
// answered by the issuer, not 91 or 98.
func TestDroppedConnections(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{})
	stop := make(chan struct{})
	var got codes
	s.Sim.SetFaults(sim.Faults{DropRate: 0.01})
	wg := load(t, s, 16, stop, &got)
	deadline := time.Now().Add(20 * time.Second)
	for got.total() < 4000 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	s.Sim.SetFaults(sim.Faults{})
	total, answered := got.total(), got.get(rc.Approved)
	t.Logf("%d purchases: %d approved, %d 91, %d 98, %d no answer; the issuer dropped about %d connections",
		total, answered, got.get(rc.IssuerDown), got.get(rc.IssuerTimeout), got.get("no answer"), s.Sim.Received()["0800"]-4)
	require.Greater(t, total, 1000, "enough load to see the drops")
	assert.Zero(t, got.get("no answer"), "every purchase is answered")
	assert.GreaterOrEqual(t, float64(answered)/float64(total), 0.98, "at least 98%% answered by the issuer")
	assert.Greater(t, s.Sim.Received()["0800"], int64(4+5), "connections were dropped and replaced (each replacement signs on)")
	eventually(t, 20*time.Second, "the reversals of the 98s are delivered", func() bool { return safDepth(t, s) == 0 })
	snap, _ := assertMoney(t, s.Journal.Pool, s.Sim)
	assert.Zero(t, snap.ReversalsTwice)
}

// TestFailover: the primary endpoint of the default route is killed under load; traffic moves
// to the secondary (the same issuer's other front end); when the primary comes back it is used
// again, and the secondary idles. Money stays right throughout.
func TestFailover(t *testing.T) {
	primary := demoIssuer(t, nil, "127.0.0.1:0")
	secondary := demoIssuer(t, primary.Issuer, "127.0.0.1:0")
	s := switchtest.Start(t, switchtest.Options{Edit: func(y string) string {
		return strings.Replace(y, "addrs: []", fmt.Sprintf("addrs: [%q, %q]", primary.Addr, secondary.Addr), 1)
	}})
	stop := make(chan struct{})
	var got codes
	wg := load(t, s, 8, stop, &got)
	eventually(t, 5*time.Second, "traffic on the primary", func() bool { return primary.Received()["0200"] > 200 })
	assert.Zero(t, secondary.Received()["0200"], "the secondary idles while the primary is up")

	addr := primary.Addr
	primary.Close(context.Background()) // killed: listener and connections gone
	before := got.get(rc.Approved)
	eventually(t, 5*time.Second, "traffic moves to the secondary", func() bool { return secondary.Received()["0200"] > 200 })
	assert.Greater(t, got.get(rc.Approved), before+150, "purchases keep being approved through the secondary")

	back := demoIssuer(t, primary.Issuer, addr) // the primary returns on its address
	eventually(t, 10*time.Second, "the primary is used again", func() bool { return back.Received()["0200"] > 200 })
	time.Sleep(300 * time.Millisecond)
	onSecondary := secondary.Received()["0200"]
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	assert.Equal(t, onSecondary, secondary.Received()["0200"], "once the primary is back the secondary idles again")
	t.Logf("answers %v; primary %v, secondary %v, primary again %v", got.n, primary.Received(), secondary.Received(), back.Received())
	assert.Zero(t, got.get("no answer"))
	assert.Less(t, got.get(rc.IssuerDown)+got.get(rc.IssuerTimeout), 50, "only what was in flight on the killed primary")

	// the journal says which endpoint carried each purchase
	var viaSecondary, viaPrimary int
	require.NoError(t, s.Journal.Pool.QueryRow(t.Context(), `SELECT count(*) FILTER (WHERE secondary), count(*) FILTER (WHERE NOT secondary AND endpoint <> '')
		FROM txn JOIN issuer_via v ON v.id = txn.via WHERE route='default'`).Scan(&viaSecondary, &viaPrimary))
	assert.InDelta(t, secondary.Received()["0200"], viaSecondary, 20, "purchases journaled as carried by the secondary")
	assert.Greater(t, viaPrimary, 400)
	eventually(t, 20*time.Second, "reversals delivered", func() bool { return safDepth(t, s) == 0 })
	assertMoney(t, s.Journal.Pool, back)
}

// TestBINRouting: two card ranges go to two different issuers; each issuer sees only its own
// cards; a reversal goes to the issuer that has the original (store-and-forward follows the
// journaled route); the route is journaled and explained.
func TestBINRouting(t *testing.T) {
	bankA := demoIssuer(t, nil, "127.0.0.1:0")
	bankB := demoIssuer(t, nil, "127.0.0.1:0")
	s := switchtest.Start(t, switchtest.Options{IssuerTimeout: 300 * time.Millisecond, Edit: func(y string) string {
		return strings.Replace(y, "  addrs: []", fmt.Sprintf(`  addrs: []
  routes:
    - {name: bank-a, primary: %q, institution: "01020000"}
    - {name: bank-b, primary: %q, institution: "03080000"}
  bins:
    "62220200": bank-b
  default_route: bank-a`, bankA.Addr, bankB.Addr), 1)
	}})
	require.Nil(t, s.Sim, "with routes configured no simulator runs in the switch")
	d := s.SignedOn("10000001")
	a, err := d.Purchase(good, 1111)
	require.Equal(t, rc.Approved, code(t, a, err))
	b, err := d.Purchase(loadCard, 2222)
	require.Equal(t, rc.Approved, code(t, b, err))
	assert.Equal(t, int64(1111), bankA.Issuer.Ledger.Snapshot().Held, "good card (6222021…) at bank A")
	assert.Equal(t, int64(2222), bankB.Issuer.Ledger.Snapshot().Held, "load card (62220200…) at bank B")

	rowA, err := s.Journal.ByRRN(t.Context(), a.Resp.RRN)
	require.NoError(t, err)
	ra, err := s.Journal.RouteOf(t.Context(), rowA.ID)
	require.NoError(t, err)
	assert.Equal(t, &journal.Route{Route: "bank-a", Endpoint: bankA.Addr}, ra)
	rowB, err := s.Journal.ByRRN(t.Context(), b.Resp.RRN)
	require.NoError(t, err)
	rb, err := s.Journal.RouteOf(t.Context(), rowB.ID)
	require.NoError(t, err)
	assert.Equal(t, &journal.Route{Route: "bank-b", Endpoint: bankB.Addr}, rb)

	// bank B takes a purchase and never answers: 98, and the reversal goes to bank B only
	bankB.SetFaults(sim.Faults{SwallowNext: 1})
	p, err := d.Purchase(loadCard, 3333)
	require.Equal(t, rc.IssuerTimeout, code(t, p, err))
	assert.Equal(t, int64(2222+3333), bankB.Issuer.Ledger.Snapshot().Held)
	eventually(t, 10*time.Second, "the reversal reaches bank B", func() bool { return safDepth(t, s) == 0 })
	assert.Equal(t, int64(2222), bankB.Issuer.Ledger.Snapshot().Held, "bank B released the timed-out purchase")
	assert.Equal(t, int64(1), bankB.Received()["0420"])
	assert.Zero(t, bankA.Received()["0420"]+bankA.Received()["0421"], "bank A never saw a reversal of bank B's purchase")
	// a void follows its original's route as well
	v, err := d.Void(loadCard, b)
	require.Equal(t, rc.Approved, code(t, v, err))
	assert.Equal(t, int64(0), bankB.Issuer.Ledger.Snapshot().Held)
	assert.Equal(t, int64(1111), bankA.Issuer.Ledger.Snapshot().Held)
}

// TestLinkShutdownDrains: with a purchase at a slow issuer, closing the switch waits for it
// (within the drain deadline) and the terminal gets its answer; an issuer that never answers
// cannot hold the shutdown beyond the drain.
func TestLinkShutdownDrains(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{IssuerTimeout: 5 * time.Second, Edit: func(y string) string {
		return y + "shutdown:\n  drain: 1s\n"
	}})
	require.Equal(t, time.Second, s.Config.Shutdown.Drain)
	d := s.SignedOn("10000001")
	s.Sim.SetFaults(sim.Faults{LatencyMinMS: 300, LatencyMaxMS: 300})
	var answer atomic.Value
	go func() {
		r, err := d.Purchase(good, 100)
		if err == nil {
			answer.Store(r.Code())
		}
	}()
	eventually(t, 2*time.Second, "the purchase is at the issuer", func() bool { return s.Sim.Received()["0200"] > 0 })
	start := time.Now()
	s.App.Close(context.Background())
	took := time.Since(start)
	assert.Equal(t, rc.Approved, answer.Load(), "the purchase under way was answered before the switch closed")
	assert.Less(t, took, 1500*time.Millisecond)

	s2 := switchtest.Start(t, switchtest.Options{IssuerTimeout: 5 * time.Second, Edit: func(y string) string {
		return y + "shutdown:\n  drain: 1s\n"
	}})
	d2 := s2.SignedOn("10000001")
	s2.Sim.SetFaults(sim.Faults{SwallowNext: 1})
	go func() { _, _ = d2.Purchase(good, 100) }()
	eventually(t, 2*time.Second, "the purchase is at the issuer", func() bool { return s2.Sim.Received()["0200"] > 0 })
	start = time.Now()
	s2.App.Close(context.Background())
	assert.Less(t, time.Since(start), 2*time.Second, "an issuer that never answers cannot hold the shutdown")
}

// TestShutdownAnswersRequestOnItsWay: a request that reaches the switch just after the stop began
// (it was on the wire when the signal came) is answered, not met with a reset connection; an idle
// terminal's socket is closed within the grace, not held for the whole drain.
func TestShutdownAnswersRequestOnItsWay(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{Edit: func(y string) string { return y + "shutdown:\n  drain: 3s\n" }})
	d := s.SignedOn("10000001")
	idle := s.SignedOn("10000002")
	closed := make(chan time.Duration)
	start := time.Now()
	go func() { s.App.Close(context.Background()); closed <- time.Since(start) }()
	time.Sleep(posswitch.DrainGrace / 5)
	r, err := d.Purchase(good, 100)
	require.NoError(t, err, "a request sent %s into the stop", time.Since(start).Round(time.Millisecond))
	assert.Equal(t, rc.Approved, r.Code())
	_ = idle.Conn().SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = idle.Conn().Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF, "the idle terminal's socket is closed by the switch")
	took := <-closed
	assert.Less(t, took, 2*time.Second, "the stop waited for the grace, not the drain")
}
