package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Where the time goes during a soak (issue 13): the two cores are shared by the generator, the
// switch, the issuer and PostgreSQL, so a tail that grows is one of them taking a core at the
// wrong moment. whereWatch samples every tick the CPU time of each (PostgreSQL split into
// autovacuum and the rest), the vacuums in progress and what PostgreSQL's active backends wait
// on; the soak reports it per interval and writes a timeline, one line per second, beside the
// bench's logs, with the second's p99.

// Share is where a stretch of the soak's CPU went, in cores (1 = one core all the time).
type Share struct {
	Switch   float64 `json:"switch"`
	Issuer   float64 `json:"issuer"`
	Postgres float64 `json:"postgres"` // every PostgreSQL process except autovacuum workers
	Vacuum   float64 `json:"autovacuum"`
	Bench    float64 `json:"generator"` // this process: the load generator and the watchers
	// VacuumS is the seconds an autovacuum worker was working on a txn partition.
	VacuumS float64 `json:"txn_vacuum_s"`
	// Waits are the wait events of PostgreSQL's active backends: the mean number of backends in
	// each over the stretch (CPU: running, not waiting).
	Waits map[string]float64 `json:"waits,omitempty"`
}

type whereSample struct {
	at                            time.Time
	sw, issuer, pg, vacuum, bench float64 // cumulative CPU seconds
	txnVacuum                     bool
	waits                         []string
}

type whereWatch struct {
	mu      sync.Mutex
	samples []whereSample
	err     error
}

// clock ticks per second of /proc/*/stat (USER_HZ); 100 on every Linux this runs on
const userHZ = 100

// procTimes reads utime+stime and cutime+cstime of a process, in seconds.
func procTimes(pid int) (self, children float64, ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command may hold spaces
	if i < 0 {
		return 0, 0, 0, false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return 0, 0, 0, false
	}
	num := func(k int) float64 { v, _ := strconv.ParseFloat(f[k-3], 64); return v }
	return (num(14) + num(15)) / userHZ, (num(16) + num(17)) / userHZ, int(num(4)), true
}

// postgresCPU is the CPU of a postmaster and its children, autovacuum workers apart. The
// children that exited are in the postmaster's cutime; workers that come and go between two
// samples are counted by their CPU delta while they are seen.
type postgresCPU struct {
	postmaster int
	seen       map[int]float64 // autovacuum worker → CPU at the last sample
	vacuum     float64         // cumulative
}

func (p *postgresCPU) read() (rest, vacuum float64) {
	self, children, _, ok := procTimes(p.postmaster)
	if !ok {
		return 0, p.vacuum
	}
	total := self + children
	ents, _ := os.ReadDir("/proc")
	alive := map[int]bool{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		s, _, ppid, ok := procTimes(pid)
		if !ok || ppid != p.postmaster {
			continue
		}
		total += s
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(cmd), "autovacuum worker") {
			alive[pid] = true
			p.vacuum += s - p.seen[pid]
			p.seen[pid] = s
		}
	}
	for pid := range p.seen {
		if !alive[pid] {
			delete(p.seen, pid)
		}
	}
	return total - p.vacuum, p.vacuum
}

func postmasterPID(dataDir string) int {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	return pid
}

func (w *whereWatch) run(ctx context.Context, url string, switchPID, issuerPID, postmaster int, tick time.Duration, stop <-chan struct{}) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		w.err = err
		return
	}
	defer conn.Close(context.Background())
	pg := &postgresCPU{postmaster: postmaster, seen: map[int]float64{}}
	me := os.Getpid()
	look := func() {
		s := whereSample{at: time.Now()}
		s.sw, _, _, _ = procTimes(switchPID)
		s.issuer, _, _, _ = procTimes(issuerPID)
		s.bench, _, _, _ = procTimes(me)
		s.pg, s.vacuum = pg.read()
		rows, err := conn.Query(ctx, `SELECT coalesce(a.wait_event_type || ':' || a.wait_event, 'CPU'), a.backend_type,
				coalesce(v.relid::regclass::text, '')
			FROM pg_stat_activity a LEFT JOIN pg_stat_progress_vacuum v ON v.pid = a.pid
			WHERE a.pid <> pg_backend_pid() AND (a.state = 'active' OR a.backend_type = 'autovacuum worker')`)
		if err != nil {
			w.mu.Lock()
			w.err = err
			w.mu.Unlock()
			return
		}
		for rows.Next() {
			var wait, kind, rel string
			if err := rows.Scan(&wait, &kind, &rel); err != nil {
				break
			}
			if kind == "autovacuum worker" {
				if strings.HasPrefix(rel, "txn_p") {
					s.txnVacuum = true
				}
				continue
			}
			if kind == "client backend" {
				s.waits = append(s.waits, wait)
			}
		}
		rows.Close()
		w.mu.Lock()
		w.samples = append(w.samples, s)
		w.mu.Unlock()
	}
	tk := time.NewTicker(tick)
	defer tk.Stop()
	for {
		look()
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// share is where the CPU went between from and to.
func (w *whereWatch) share(from, to time.Time) *Share {
	w.mu.Lock()
	defer w.mu.Unlock()
	var in []whereSample
	for _, s := range w.samples {
		if !s.at.Before(from) && !s.at.After(to) {
			in = append(in, s)
		}
	}
	if len(in) < 2 {
		return nil
	}
	a, b := in[0], in[len(in)-1]
	secs := b.at.Sub(a.at).Seconds()
	sh := &Share{Switch: (b.sw - a.sw) / secs, Issuer: (b.issuer - a.issuer) / secs, Postgres: (b.pg - a.pg) / secs,
		Vacuum: (b.vacuum - a.vacuum) / secs, Bench: (b.bench - a.bench) / secs, Waits: map[string]float64{}}
	for i, s := range in {
		if i > 0 && s.txnVacuum {
			sh.VacuumS += s.at.Sub(in[i-1].at).Seconds()
		}
		for _, wt := range s.waits {
			sh.Waits[wt]++
		}
	}
	for k := range sh.Waits { // the mean number of backends in each wait
		sh.Waits[k] /= float64(len(in))
	}
	return sh
}

// topWaits names the commonest wait events of a share (CPU means running, not waiting).
func topWaits(s *Share, n int) string {
	if s == nil {
		return ""
	}
	type kv struct {
		k string
		v float64
	}
	var all []kv
	for k, v := range s.Waits {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v })
	var parts []string
	for i, e := range all {
		if i == n {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.2f", e.k, e.v))
	}
	return strings.Join(parts, ", ")
}

// writeTimeline writes one line per second of the load: requests, p50/p99/max, the CPU of
// each process and whether a txn partition was being vacuumed.
func (w *whereWatch) writeTimeline(path string, start time.Time, samples []sample, d time.Duration) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	c := csv.NewWriter(f)
	c.Write([]string{"second", "requests", "errors", "p50_ms", "p99_ms", "max_ms", "switch_cpu", "issuer_cpu", "postgres_cpu", "autovacuum_cpu", "generator_cpu", "txn_vacuum_s", "pg_active_backends", "waits"})
	n := int(d / time.Second)
	bySec := make([][]float64, n+1)
	errs := make([]int, n+1)
	for _, s := range samples {
		i := min(int(s.at/time.Second), n)
		if s.err {
			errs[i]++
			continue
		}
		bySec[i] = append(bySec[i], s.lat.Seconds()*1000)
	}
	for i := 0; i <= n; i++ {
		from := start.Add(time.Duration(i) * time.Second)
		sh := w.share(from, from.Add(time.Second))
		p := percentiles(bySec[i])
		row := []string{strconv.Itoa(i + 1), strconv.Itoa(len(bySec[i]) + errs[i]), strconv.Itoa(errs[i]),
			fmt.Sprintf("%.2f", p["p50"]), fmt.Sprintf("%.2f", p["p99"]), fmt.Sprintf("%.2f", p["max"])}
		if sh != nil {
			var active float64
			for _, v := range sh.Waits {
				active += v
			}
			row = append(row, fmt.Sprintf("%.2f", sh.Switch), fmt.Sprintf("%.2f", sh.Issuer), fmt.Sprintf("%.2f", sh.Postgres),
				fmt.Sprintf("%.2f", sh.Vacuum), fmt.Sprintf("%.2f", sh.Bench), fmt.Sprintf("%.1f", sh.VacuumS), fmt.Sprintf("%.2f", active), topWaits(sh, 3))
		}
		c.Write(row)
	}
	c.Flush()
	return c.Error()
}
