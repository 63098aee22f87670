package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/switch/app"
	"github.com/shoudan/shoudan/terminals"
	"github.com/shoudan/shoudan/terminals/device"
	"github.com/spf13/cobra"
)

type loadFlags struct {
	addr                  string
	terminals, idle, conc int
	rate                  float64
	duration              time.Duration
	count                 int64
	mix                   string
	asJSON, quiet         bool
	onStart               func() // called once, when the terminals are signed on and the load begins
}

// LoadReport is what a load run measured.
type LoadReport struct {
	Name       string             `json:"name"`
	Mode       string             `json:"mode"`
	Terminals  int                `json:"terminals"`
	Idle       int                `json:"idle_terminals"`
	Seconds    float64            `json:"seconds"`
	Requests   int64              `json:"requests"`
	Approved   int64              `json:"approved"`
	Errors     int64              `json:"errors"`
	Throughput float64            `json:"throughput_per_s"`
	Codes      map[string]int64   `json:"codes"`
	LatencyMS  map[string]float64 `json:"latency_ms"`
}

func loadCmd(cfgPath *string) *cobra.Command {
	var f loadFlags
	c := &cobra.Command{
		Use:   "load",
		Short: "Drive many simulated terminals (signed on, MACs, PIN blocks): throughput, codes, latency percentiles",
		Long: `Open-loop at --rate transactions per second, or closed-loop at --concurrency, for --duration or
--count. Each terminal has its own connection and signs on first; the mix is weights by type:
purchase (chip with PIN), qps (双免: contactless, no PIN), void, reversal, status.
Terminals are the config's generated load_terminals (TIDs 90000001..).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, reg, err := loadConfig(*cfgPath)
			if err != nil {
				return err
			}
			if f.addr == "" {
				f.addr = c.Listeners[0].Addr
			}
			app.TuneRuntime() // the generator shares the machine: the same GC setting as the switch
			// Ctrl-C (or SIGTERM) ends the run early: the transactions in flight finish and the
			// report covers what was done
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep, _, err := runLoad(ctx, reg, f, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if ctx.Err() != nil && cmd.Context().Err() == nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "interrupted after %.1f s: the report covers the transactions done so far\n", rep.Seconds)
			}
			return printReport(cmd.OutOrStdout(), rep, f.asJSON)
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.addr, "addr", "", "switch listener (default: the config's first)")
	fl.IntVar(&f.terminals, "terminals", 64, "active terminals, each on its own connection")
	fl.IntVar(&f.idle, "idle", 0, "extra terminals that sign on and then stay connected, idle")
	fl.IntVar(&f.conc, "concurrency", 0, "closed loop: transactions in flight (default: one per active terminal)")
	fl.Float64Var(&f.rate, "rate", 0, "open loop: transactions per second (0 = closed loop)")
	fl.DurationVar(&f.duration, "duration", 10*time.Second, "how long")
	fl.Int64Var(&f.count, "count", 0, "stop after this many transactions (0 = use --duration)")
	fl.StringVar(&f.mix, "mix", "purchase=70,qps=15,void=5,reversal=5,status=5", "transaction mix as type=weight")
	fl.BoolVar(&f.asJSON, "json", false, "print the report as JSON")
	fl.BoolVar(&f.quiet, "quiet", false, "no progress display")
	return c
}

type mixEntry struct {
	kind   string
	weight int
}

func parseMix(s string) ([]mixEntry, int, error) {
	var out []mixEntry
	total := 0
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		var w int
		if _, err := fmt.Sscan(v, &w); !ok || err != nil || w < 0 {
			return nil, 0, fmt.Errorf("--mix: expected type=weight, found %q", part)
		}
		if !slices.Contains([]string{"purchase", "qps", "void", "reversal", "status"}, k) {
			return nil, 0, fmt.Errorf("--mix: unknown type %q (purchase, qps, void, reversal, status)", k)
		}
		out = append(out, mixEntry{k, w})
		total += w
	}
	if total == 0 {
		return nil, 0, fmt.Errorf("--mix: weights add up to 0")
	}
	return out, total, nil
}

// loadTerminal is one simulated terminal with its last approved purchase (for voids and
// reversals).
type loadTerminal struct {
	dev     *device.Terminal
	last    *device.Result
	lastTap bool
}

func (lt *loadTerminal) do(kind string) (string, *device.Result, error) {
	card := device.Chip(loadPAN, "2912", "123456")
	switch kind {
	case "qps":
		r, err := lt.dev.Purchase(device.Tap(loadPAN, "2912", ""), 100+rand.Int64N(50000))
		if err == nil && r.Code() == rc.Approved {
			lt.last, lt.lastTap = r, true
		}
		return kind, r, err
	case "void":
		if lt.last != nil {
			o, tap := lt.last, lt.lastTap
			lt.last = nil
			if tap { // a void is read the way its purchase was
				card = device.Tap(loadPAN, "2912", "123456")
			}
			r, err := lt.dev.Void(card, o)
			return kind, r, err
		}
	case "reversal":
		if lt.last != nil {
			o := lt.last
			lt.last = nil
			r, err := lt.dev.Reversal(o, "98")
			return kind, r, err
		}
	case "status":
		r, err := lt.dev.Status("", "")
		return kind, r, err
	}
	// a purchase, or a void or reversal with nothing to void or reverse
	r, err := lt.dev.Purchase(card, 100+rand.Int64N(100000))
	if err == nil && r.Code() == rc.Approved {
		lt.last, lt.lastTap = r, false
	}
	return "purchase", r, err
}

// sample is one transaction as the generator saw it: latency from its scheduled moment (open
// loop) or its start, the terminal's own round trip, and the RRN the switch answered with. It
// holds no pointer, so that the garbage collector does not scan the samples of a long soak
// (570,000 for 10 minutes) at every cycle of the generator, which shares the machine with what
// it measures.
type sample struct {
	lat, rtt time.Duration
	at       time.Duration // scheduled (open loop) or started, from the start of the load
	kindNo   uint8         // index in sampleKinds
	code     [2]byte
	rrn      [12]byte // zero: none
	err      bool
}

// sampleKinds are the kinds a sample can name (the mix's and the bench's).
var sampleKinds = []string{"", "purchase", "qps", "void", "reversal", "status", "refund", "balance"}

func newSample(kind, code, rrn string) sample {
	s := sample{}
	for i, k := range sampleKinds {
		if k == kind {
			s.kindNo = uint8(i)
		}
	}
	copy(s.code[:], code)
	copy(s.rrn[:], rrn)
	return s
}

func (s sample) kind() string   { return sampleKinds[s.kindNo] }
func (s sample) codeOf() string { return string(s.code[:]) }
func (s sample) rrnOf() string {
	if s.rrn == [12]byte{} {
		return ""
	}
	return string(s.rrn[:])
}

func runLoad(ctx context.Context, reg *terminals.Registry, f loadFlags, progress io.Writer) (*LoadReport, []sample, error) {
	mix, total, err := parseMix(f.mix)
	if err != nil {
		return nil, nil, err
	}
	need := f.terminals + f.idle
	byTID := map[string]*terminals.Terminal{}
	for _, x := range reg.Terminals() {
		byTID[x.TID] = x
	}
	tc, err := terminalTLS.config()
	if err != nil {
		return nil, nil, err
	}
	var cfgs []device.Config
	for i := 0; i < need; i++ {
		t := byTID[terminals.LoadTID(i)]
		if t == nil {
			return nil, nil, fmt.Errorf("load terminal %s is not in the config: raise load_terminals.count to at least %d", terminals.LoadTID(i), need)
		}
		cfgs = append(cfgs, device.Config{TID: t.TID, MID: t.MID, Serial: t.Serial, TMK: device.TMKOf(t.DemoTMK), Timeout: 15 * time.Second, TLS: tc})
	}
	// connect and sign on, 64 at a time
	terms := make([]*loadTerminal, need)
	var firstErr atomic.Value
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := range cfgs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			d, err := device.Dial(f.addr, cfgs[i])
			if err == nil {
				var r *device.Result
				r, err = d.SignOn()
				if err == nil && r.Code() != rc.Approved {
					err = fmt.Errorf("sign-on of %s answered %s", cfgs[i].TID, r.Code())
				}
			}
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			terms[i] = &loadTerminal{dev: d}
		}()
	}
	wg.Wait()
	defer func() {
		for _, t := range terms {
			if t != nil {
				t.dev.Close()
			}
		}
	}()
	if e := firstErr.Load(); e != nil {
		return nil, nil, e.(error)
	}
	active := terms[:f.terminals]
	pick := func() string {
		n := rand.IntN(total)
		for _, m := range mix {
			if n < m.weight {
				return m.kind
			}
			n -= m.weight
		}
		return "purchase"
	}
	free := make(chan *loadTerminal, len(active))
	for _, t := range active {
		free <- t
	}
	var done, issued atomic.Int64
	var mu sync.Mutex
	var samples []sample
	record := func(s sample) {
		mu.Lock()
		samples = append(samples, s)
		mu.Unlock()
		done.Add(1)
	}
	var start time.Time
	run := func(t *loadTerminal, scheduled time.Time) {
		kind, r, err := t.do(pick())
		var s sample
		if err == nil {
			s = newSample(kind, r.Code(), r.Resp.RRN)
			s.rtt = r.Latency
		} else {
			s = newSample(kind, "", "")
			s.err = true
		}
		s.lat, s.at = time.Since(scheduled), scheduled.Sub(start)
		record(s)
		free <- t
	}
	start = time.Now()
	if f.onStart != nil {
		f.onStart()
	}
	deadline := start.Add(f.duration)
	more := func() bool {
		if f.count > 0 {
			return issued.Add(1) <= f.count
		}
		return time.Now().Before(deadline)
	}
	stopProgress := make(chan struct{})
	if !f.quiet {
		go func() {
			tk := time.NewTicker(time.Second)
			defer tk.Stop()
			prev := int64(0)
			for {
				select {
				case <-stopProgress:
					return
				case <-tk.C:
					n := done.Load()
					fmt.Fprintf(progress, "\r%5.0fs  %9d done  %8d/s   ", time.Since(start).Seconds(), n, n-prev)
					prev = n
				}
			}
		}()
	}
	var runners sync.WaitGroup
	mode := "closed"
	if f.rate > 0 {
		mode = fmt.Sprintf("open %.0f/s", f.rate)
		interval := time.Duration(float64(time.Second) / f.rate)
		next := start
		for more() && ctx.Err() == nil {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			t := <-free // latency counts from the scheduled moment: no coordinated omission
			runners.Add(1)
			go func(at time.Time) { defer runners.Done(); run(t, at) }(next)
			next = next.Add(interval)
		}
	} else {
		conc := f.conc
		if conc <= 0 || conc > len(active) {
			conc = len(active)
		}
		for w := 0; w < conc; w++ {
			runners.Add(1)
			go func() {
				defer runners.Done()
				for more() && ctx.Err() == nil {
					t := <-free
					run(t, time.Now())
				}
			}()
		}
	}
	runners.Wait()
	close(stopProgress)
	if !f.quiet {
		fmt.Fprintln(progress)
	}
	return report("shoudan", mode, f.terminals, f.idle, time.Since(start), samples), samples, nil
}

func report(name, mode string, terms, idle int, elapsed time.Duration, samples []sample) *LoadReport {
	rep := &LoadReport{Name: name, Mode: mode, Terminals: terms, Idle: idle, Seconds: elapsed.Seconds(), Codes: map[string]int64{}, LatencyMS: map[string]float64{}}
	lats := make([]float64, 0, len(samples))
	for _, s := range samples {
		rep.Requests++
		if s.err {
			rep.Errors++
			continue
		}
		rep.Codes[s.codeOf()]++
		if s.codeOf() == rc.Approved {
			rep.Approved++
		}
		lats = append(lats, s.lat.Seconds()*1000)
	}
	rep.Throughput = float64(rep.Requests) / elapsed.Seconds()
	rep.LatencyMS = percentiles(lats)
	return rep
}

// percentiles of values (ms): p50, p90, p99, p99.9 and max.
func percentiles(v []float64) map[string]float64 {
	out := map[string]float64{}
	sort.Float64s(v)
	for _, p := range []struct {
		name string
		q    float64
	}{{"p50", .5}, {"p90", .9}, {"p99", .99}, {"p99.9", .999}, {"max", 1}} {
		if len(v) > 0 {
			i := int(math.Ceil(p.q*float64(len(v)))) - 1
			out[p.name] = v[max(0, min(i, len(v)-1))]
		}
	}
	return out
}

func printReport(w io.Writer, r *LoadReport, asJSON bool) error {
	if asJSON {
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(r)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s (%s, %d terminals, %d idle)\t\n", r.Name, r.Mode, r.Terminals, r.Idle)
	fmt.Fprintf(tw, "requests\t%d in %.1f s\n", r.Requests, r.Seconds)
	fmt.Fprintf(tw, "throughput\t%.0f/s (approved %.0f/s)\n", r.Throughput, float64(r.Approved)/r.Seconds)
	fmt.Fprintf(tw, "errors\t%d\n", r.Errors)
	var codes []string
	for c, n := range r.Codes {
		codes = append(codes, fmt.Sprintf("%s=%d", c, n))
	}
	sort.Strings(codes)
	fmt.Fprintf(tw, "codes\t%s\n", strings.Join(codes, " "))
	fmt.Fprintf(tw, "latency ms\tp50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f\n",
		r.LatencyMS["p50"], r.LatencyMS["p90"], r.LatencyMS["p99"], r.LatencyMS["p99.9"], r.LatencyMS["max"])
	return tw.Flush()
}

// loadPAN is the demo issuer's load card (a balance that does not run out).
const loadPAN = "6222020000000000001"
