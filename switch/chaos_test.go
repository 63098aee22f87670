package posswitch_test

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shoudan/shoudan/issuerlink/chaos"
	"github.com/shoudan/shoudan/issuerlink/sim"
	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/terminals"
	"github.com/shoudan/shoudan/terminals/device"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chaosLog collects every purchase and reversal exchange of the load.
type chaosLog struct {
	mu      sync.Mutex
	n       int
	codes   map[string]int
	late    []string // answered later than the bound, or never
	worst   time.Duration
	cutoff  time.Time // exchanges started after this are not judged (the switch is stopping)
	bound   time.Duration
	answers atomic.Int64
}

func (l *chaosLog) observe(kind string, start time.Time, took time.Duration, code string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.cutoff.IsZero() && start.After(l.cutoff) {
		return
	}
	l.n++
	if err != nil {
		code = "no answer"
	}
	l.codes[kind+" "+code]++
	if err == nil {
		l.answers.Add(1)
	}
	l.worst = max(l.worst, took)
	if err != nil || took > l.bound {
		l.late = append(l.late, fmt.Sprintf("%s at %s: %s after %s (%v)", kind, start.Format("15:04:05.000"), code, took.Round(time.Millisecond), err))
	}
}

func (l *chaosLog) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ks []string
	for k, v := range l.codes {
		ks = append(ks, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(ks)
	return fmt.Sprintf("%d exchanges, worst %s: %s", l.n, l.worst.Round(time.Millisecond), strings.Join(ks, " "))
}

// TestChaosIssuerLink puts a fault-injecting proxy between the switch (its own process) and the
// simulated issuer: for 60 s it drops, stalls (some for ever), half-closes, delays and refuses
// the link's connections at random while 16 terminals send purchases and reversals. Every
// request must be answered within the issuer timeout + 1 s; SIGTERM in the middle of it must
// stop the switch within its drain deadline; then, with the faults gone and the switch
// restarted, the issuer's books must equal the journal's: what it holds is exactly the approved
// purchases, and no reversal was applied twice.
func TestChaosIssuerLink(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs for over a minute")
	}
	const (
		timeout = time.Second
		drain   = 4 * time.Second
		chaosOn = 60 * time.Second
	)
	r, reg := newRunner(t, sim.Faults{LatencyMaxMS: 5})
	proxy, err := chaos.Listen("127.0.0.1:0", r.issuer.Addr)
	require.NoError(t, err)
	t.Cleanup(proxy.Close)
	y, err := os.ReadFile(r.cfg)
	require.NoError(t, err)
	cfg := strings.Replace(string(y), r.issuer.Addr, proxy.Addr, 1)
	cfg = strings.Replace(cfg, "timeout: 500ms", "timeout: 1s", 1)
	cfg += fmt.Sprintf("shutdown:\n  drain: %s\n", drain)
	require.NoError(t, os.WriteFile(r.cfg, []byte(cfg), 0o644))

	log := &chaosLog{codes: map[string]int{}, bound: timeout + time.Second}
	card := device.Chip("6222020000000000001", "2912", "123456") // the load card: it never runs dry
	var terms []*crashTerminal
	for i := range 16 {
		tid := terminals.LoadTID(i)
		rt := reg.Terminal(tid, "898310058120001")
		require.NotNil(t, rt, tid)
		terms = append(terms, &crashTerminal{cfg: device.Config{TID: tid, MID: rt.MID, Serial: rt.Serial, TMK: device.TMKOf(rt.DemoTMK), Timeout: 10 * time.Second},
			state: device.State{Batch: "000000"}, card: &card, observe: log.observe, reverseShare: 0.1})
	}
	cmd := r.start()
	var stop atomic.Bool
	var wg sync.WaitGroup
	for _, ct := range terms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				ct.step(r.prod)
			}
			ct.drop()
		}()
	}
	proxy.SetFaults(chaos.Faults{Every: 2 * time.Second, Drop: 3, Stall: 2, HalfClose: 2, Delay: 3, Refuse: 1,
		StallFor: 4 * time.Second, StallForever: true, DelayFor: 3 * time.Second, DelayBy: 1500 * time.Millisecond})
	time.Sleep(chaosOn)
	t.Logf("chaos: %s; proxy %+v", log.summary(), proxy.Counts())

	// SIGTERM under load and faults: the switch must be gone within its drain deadline
	log.mu.Lock()
	log.cutoff = time.Now()
	log.mu.Unlock()
	sent := time.Now()
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	select {
	case <-exited:
		t.Logf("stopped %s after SIGTERM (drain deadline %s)", time.Since(sent).Round(time.Millisecond), drain)
	case <-time.After(drain + 2*time.Second):
		_ = cmd.Process.Signal(syscall.SIGQUIT) // the goroutine dump goes to the switch's log
		time.Sleep(500 * time.Millisecond)
		_ = cmd.Process.Kill()
		<-exited
		t.Errorf("the switch did not stop within %s of SIGTERM (drain deadline %s): killed; log %s", drain+2*time.Second, drain, r.logf.Name())
	}
	log.mu.Lock()
	late := append([]string(nil), log.late...)
	log.mu.Unlock()
	if len(late) > 0 {
		show := late[:min(len(late), 15)]
		t.Errorf("%d of the requests sent before SIGTERM were not answered within %s:\n  %s", len(late), log.bound, strings.Join(show, "\n  "))
	}

	// the faults end; the restarted switch recovers what was in flight and delivers reversals
	proxy.Heal()
	cmd = r.start()
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	pool := r.settle(terms, &stop, &wg, 60*time.Second)
	snap, held := assertMoney(t, pool, r.issuer)
	assert.Greater(t, held, 100, "purchases were approved through the chaos")
	t.Logf("after: %s; issuer: %d auths, %d held (%d fen), %d reversal repeats answered idempotently",
		log.summary(), len(snap.Auths), held, snap.Held, snap.ReversalsRepeat)
	require.Greater(t, log.codes["purchase "+rc.Approved], 100)
}
