package posswitch_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shoudan/shoudan/issuerlink/sim"
	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/spec/pos"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals/device"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func safDepth(t *testing.T, s *switchtest.Switch) int {
	n, _, err := s.Journal.SAFStats(context.Background())
	require.NoError(t, err)
	return n
}

// TestTimeoutReversedOnce: the issuer takes a purchase (funds held) and never answers; the
// terminal gets 98; the reversal is durable before that answer and reaches the issuer once it
// answers again, exactly once; the issuer's ledger ends with nothing held.
func TestTimeoutReversedOnce(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{IssuerTimeout: 300 * time.Millisecond})
	d := s.SignedOn("10000001")
	s.Sim.SetFaults(sim.Faults{SwallowNext: 1, DownReversals: true})

	p, err := d.Purchase(good, 12345)
	require.Equal(t, rc.IssuerTimeout, code(t, p, err))
	assert.Equal(t, int64(12345), s.Sim.Issuer.Ledger.Snapshot().Held, "the issuer approved and holds the funds")
	assert.Equal(t, 1, safDepth(t, s), "the reversal was queued durably before the terminal got 98")
	row := lastRow(t, s, "898310058120001", "10000001")
	assert.Equal(t, byte(journal.TimedOut), row.State)

	// the terminal clears its pending reversal as well: still one reversal upstream
	rv, err := d.Reversal(p, "98")
	require.Equal(t, rc.Approved, code(t, rv, err))

	eventually(t, 5*time.Second, "the forwarder tries while reversals go unanswered", func() bool {
		r := s.Sim.Received()
		return r["0420"]+r["0421"] >= 2
	})
	assert.Equal(t, int64(12345), s.Sim.Issuer.Ledger.Snapshot().Held)
	s.Sim.SetFaults(sim.Faults{}) // the issuer answers again
	eventually(t, 10*time.Second, "the reversal is acknowledged", func() bool { return safDepth(t, s) == 0 })
	snap := s.Sim.Issuer.Ledger.Snapshot()
	assert.Equal(t, int64(0), snap.Held, "nothing left held")
	assert.Equal(t, 0, snap.ReversalsTwice)
	assert.Equal(t, 0, snap.ReversalsRepeat, "no reversal reached the issuer after one was applied")
	assert.Greater(t, s.Sim.Received()["0421"], int64(0), "retries went out flagged as repeats (0421)")
	time.Sleep(500 * time.Millisecond)
	assert.Equal(t, 0, s.Sim.Issuer.Ledger.Snapshot().ReversalsRepeat, "and nothing after the acknowledgement")
}

// TestLateApprovalReversed: an approval that arrives after the switch gave up is never honoured:
// the terminal has 98 and the issuer's hold is reversed.
func TestLateApprovalReversed(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{IssuerTimeout: 200 * time.Millisecond})
	d := s.SignedOn("10000001")
	s.Sim.SetFaults(sim.Faults{LateRate: 1, LateMS: 600})
	p, err := d.Purchase(good, 500)
	require.Equal(t, rc.IssuerTimeout, code(t, p, err))
	s.Sim.SetFaults(sim.Faults{})
	eventually(t, 10*time.Second, "the late approval is reversed", func() bool {
		return safDepth(t, s) == 0 && s.Sim.Issuer.Ledger.Snapshot().Held == 0
	})
	row := lastRow(t, s, "898310058120001", "10000001")
	assert.Equal(t, "98", row.RespCode, "the journal keeps what the terminal was told")
}

// TestLinkDown91: with no route to the issuer the terminal gets 91, nothing is queued, and the
// link comes back by itself when the issuer does.
func TestLinkDown91(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{})
	d := s.SignedOn("10000001")
	addr, is := s.Sim.Addr, s.Sim.Issuer
	s.Sim.Close(context.Background())
	eventually(t, 5*time.Second, "the link notices", func() bool { return !s.Link.Up() })
	r, err := d.Purchase(good, 100)
	require.Equal(t, rc.IssuerDown, code(t, r, err))
	assert.Equal(t, 0, safDepth(t, s), "nothing went upstream: nothing to reverse")

	again := sim.NewServer(is, sim.Faults{}, s.Log)
	require.NoError(t, again.Start(addr, "127.0.0.1:0"))
	defer again.Close(context.Background())
	eventually(t, 10*time.Second, "the link reconnects", s.Link.Up)
	eventually(t, 10*time.Second, "every connection is replaced", func() bool { return again.Received()["0800"] >= int64(s.Config.Issuer.Conns) })
	assert.Equal(t, int64(s.Config.Issuer.Conns), again.Received()["0800"], "every new issuer connection signs on first, once")
	r, err = d.Purchase(good, 100)
	require.Equal(t, rc.Approved, code(t, r, err))
}

// TestJournalOutage: with PostgreSQL down the switch declines 96 (never approving without a
// durable record, nothing charged at the issuer) and recovers by itself when it is back.
func TestJournalOutage(t *testing.T) {
	dir := switchtest.TempDir(t)
	pg := switchtest.Postgres(t, dir)
	t.Cleanup(func() { _ = pg.Stop() })
	s := switchtest.Start(t, switchtest.Options{DatabaseURL: switchtest.NewDatabase(t, pg.URL())})
	d := s.SignedOn("10000001")
	r, err := d.Purchase(good, 100)
	require.Equal(t, rc.Approved, code(t, r, err))
	held := s.Sim.Issuer.Ledger.Snapshot().Held

	require.NoError(t, pg.Kill())
	for i := 0; i < 3; i++ {
		r, err = d.Purchase(good, 100)
		require.Equal(t, rc.SystemMalfunction, code(t, r, err))
		assert.False(t, r.Frame.Has(38), "no authorisation code")
	}
	assert.Equal(t, held, s.Sim.Issuer.Ledger.Snapshot().Held, "nothing went to the issuer while the journal was down")

	pg = switchtest.Postgres(t, dir)
	eventually(t, 15*time.Second, "approvals resume", func() bool {
		r, err := d.Purchase(good, 100)
		return err == nil && r.Code() == rc.Approved
	})
}

// TestCardDataNeverStored: after every transaction type, neither the database nor the logs hold
// a test card's full PAN, track, PIN block or ICC data.
func TestCardDataNeverStored(t *testing.T) {
	var logs syncBuffer
	url := switchtest.Database(t)
	s := switchtest.Start(t, switchtest.Options{DatabaseURL: url, Log: &logs, IssuerTimeout: 300 * time.Millisecond})
	d := s.SignedOn("10000001")
	var secrets []string
	keep := func(r *device.Result, err error) *device.Result {
		require.NoError(t, err)
		if req, ok := r.Sent.(*pos.PurchaseRequest); ok {
			if len(req.PINBlock) > 0 {
				secrets = append(secrets, hex.EncodeToString(req.PINBlock), string(req.PINBlock))
			}
			if len(req.ICC) > 0 {
				secrets = append(secrets, hex.EncodeToString(req.ICC))
			}
		}
		return r
	}
	swipe := device.Swipe(goodPAN, "2912", "123456")
	keep(d.Balance(good))
	p := keep(d.Purchase(good, 1000))
	keep(d.Purchase(swipe, 1000))
	keep(d.Purchase(tap, 1000))
	keep(d.Void(good, p))
	keep(d.Purchase(device.Chip(goodPAN, "2912", "999999"), 100)) // wrong PIN
	s.Sim.SetFaults(sim.Faults{SwallowNext: 1})
	to := keep(d.Purchase(good, 1000)) // timeout: a reversal is sealed in the queue
	keep(d.Reversal(to, "98"))
	keep(d.Status("", ""))
	s.Switch.Now = func() time.Time { return time.Now().AddDate(0, 0, -1) }
	o := keep(d.Purchase(swipe, 2000))
	s.Switch.Now = time.Now
	keep(d.Refund(swipe, o.Resp.RRN, time.Now().AddDate(0, 0, -1).Format("0102"), 500))
	keep(d.Settle(pos.Totals{}))
	eventually(t, 10*time.Second, "the reversal is delivered", func() bool { return safDepth(t, s) == 0 })

	secrets = append(secrets, goodPAN, hex.EncodeToString([]byte(goodPAN)), swipe.Track2, strings.ReplaceAll(swipe.Track2, "=", "D"),
		hex.EncodeToString([]byte(swipe.Track2)))
	dump := dumpDatabase(t, url)
	require.Contains(t, dump, "622202*********0123", "the scan sees the masked PAN, so it would see the full one")
	for _, sec := range secrets {
		assert.NotContains(t, strings.ToLower(dump), strings.ToLower(sec), "database holds card data")
		assert.NotContains(t, strings.ToLower(logs.String()), strings.ToLower(sec), "logs hold card data")
	}
	require.Contains(t, logs.String(), "622202*********0123")
}

// dumpDatabase renders every row of every table as text.
func dumpDatabase(t *testing.T, url string) string {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer c.Close(ctx)
	rows, err := c.Query(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema='public'")
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.NotEmpty(t, tables)
	var b strings.Builder
	for _, tb := range tables {
		rows, err := c.Query(ctx, "SELECT t::text FROM "+pgx.Identifier{tb}.Sanitize()+" t")
		require.NoError(t, err)
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		for _, l := range lines {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
