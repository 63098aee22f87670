package sim

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoudan/shoudan/spec"
	"github.com/shoudan/shoudan/spec/upstream"
)

// The issuer's books survive a restart, as a real issuer's do (a void after a restart finds
// its purchase instead of 25), and stay bounded in memory and on disk:
//
//   - every change is appended to <dir>/ledger.log as one JSON line: the authorisations it
//     touched and the balances of their cards; at open, and every compactEvery lines, the
//     retained state is written to <dir>/ledger.snap and the log starts again. While running,
//     a snapshot is written in the background, a chunk at a time (compactBehind), so requests
//     are never held up by it: every record carries absolute values, so replaying
//     ledger.log.old and ledger.log over a newer snapshot after a crash gives the same books;
//   - authorisations are kept for Retention (what voids, reversals and the clearing file
//     need: a void is same-day, a reversal follows within minutes, the clearing file is
//     daily) and at most MaxAuths of them; older ones are forgotten, oldest first, and a
//     void or reversal of one is answered 25 like a real issuer's past its window;
//   - PANs are never written: a card is named by a keyed hash (HMAC-SHA256 under a key
//     derived from the zone key) and shown masked.

// compactEvery is the fewest changes the log takes before a snapshot (a variable for tests);
// a ledger larger than that takes as many changes as it holds authorisations.
var compactEvery = 200000

// Bounds of the ledger's memory.
const (
	DefaultRetention = 72 * time.Hour
	DefaultMaxAuths  = 500000
)

type diskAuth struct {
	Key          string    `json:"key"`
	Card         string    `json:"card"` // keyed hash of the PAN
	Masked       string    `json:"pan"`
	Kind         string    `json:"kind"`
	Amount       int64     `json:"amount"`
	State        string    `json:"state"`
	AuthCode     string    `json:"auth_code"`
	Of           string    `json:"of,omitempty"`
	Reversals    int       `json:"reversals,omitempty"`
	Repeats      int       `json:"repeats,omitempty"`
	RRN          string    `json:"rrn,omitempty"`
	Trace        string    `json:"trace,omitempty"`
	Transmission string    `json:"transmission,omitempty"`
	MID          string    `json:"mid,omitempty"`
	TID          string    `json:"tid,omitempty"`
	At           time.Time `json:"at,omitzero"`
	Added        time.Time `json:"added"`
}

type diskChange struct {
	Auths    []diskAuth       `json:"auths,omitempty"`
	Balances map[string]int64 `json:"balances,omitempty"`
}

type ledgerFile struct {
	dir   string
	key   []byte
	byRef map[string]string // card hash -> PAN (of the configured cards)
	f     *os.File
	w     *bufio.Writer
	lines int
	err   error             // the first write error, shown by the control endpoint
	refOf map[string]string // PAN -> ref of the configured cards (an HMAC per authorisation cost seconds per snapshot)
	// compacting is set while a snapshot is written in the background; wg waits for it
	compacting atomic.Bool
	wg         sync.WaitGroup
	bgErr      atomic.Pointer[error]
}

func (p *ledgerFile) ref(pan string) string {
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte(pan))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// Persist keeps the ledger in dir (created 0700) and loads what it holds: call it once, before
// the issuer answers anything. key names cards on disk (the zone key serves).
func (l *Ledger) Persist(dir string, key []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("ledger_dir %s: %w", dir, err)
	}
	mk := hmac.New(sha256.New, key)
	mk.Write([]byte("shoudan sim ledger"))
	p := &ledgerFile{dir: dir, key: mk.Sum(nil), byRef: map[string]string{}, refOf: map[string]string{}}
	for pan := range l.cards {
		r := p.ref(pan)
		p.byRef[r], p.refOf[pan] = pan, r
	}
	if b, err := os.ReadFile(filepath.Join(dir, "ledger.snap")); err == nil {
		var c diskChange
		if err := json.Unmarshal(b, &c); err != nil {
			return fmt.Errorf("ledger %s: %w", filepath.Join(dir, "ledger.snap"), err)
		}
		l.apply(p, c)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// ledger.log.old: the log of a background snapshot that did not finish (or finished and
	// was not removed yet: replaying it again changes nothing)
	for _, name := range []string{"ledger.log.old", "ledger.log"} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var c diskChange
			if json.Unmarshal(sc.Bytes(), &c) != nil {
				break // a line cut short by a crash: everything before it counts
			}
			l.apply(p, c)
		}
		f.Close()
	}
	l.evict()
	l.file = p
	return l.compact()
}

func (l *Ledger) apply(p *ledgerFile, c diskChange) {
	for _, d := range c.Auths {
		pan, ok := p.byRef[d.Card]
		if !ok {
			continue // a card no longer configured
		}
		a := &Auth{Key: d.Key, PAN: pan, Kind: d.Kind, Amount: d.Amount, State: d.State, AuthCode: d.AuthCode, Of: d.Of, Reversals: d.Reversals,
			Repeats: d.Repeats, RRN: d.RRN, Trace: d.Trace, Transmission: d.Transmission, MID: d.MID, TID: d.TID, At: d.At, Added: d.Added}
		if _, had := l.auths[a.Key]; !had {
			l.order = append(l.order, a.Key)
		}
		l.auths[a.Key] = a
	}
	for ref, bal := range c.Balances {
		if pan, ok := p.byRef[ref]; ok {
			l.cards[pan].Balance = bal
		}
	}
}

func (p *ledgerFile) card(pan string) string {
	if r, ok := p.refOf[pan]; ok {
		return r
	}
	return p.ref(pan)
}

func (p *ledgerFile) disk(a *Auth) diskAuth {
	return diskAuth{Key: a.Key, Card: p.card(a.PAN), Masked: spec.MaskPAN(a.PAN), Kind: a.Kind, Amount: a.Amount, State: a.State, AuthCode: a.AuthCode,
		Of: a.Of, Reversals: a.Reversals, Repeats: a.Repeats, RRN: a.RRN, Trace: a.Trace, Transmission: a.Transmission, MID: a.MID, TID: a.TID,
		At: a.At, Added: a.Added}
}

// state is the retained state as a snapshot (under the lock).
func (l *Ledger) state() diskChange {
	p := l.file
	c := diskChange{Balances: map[string]int64{}, Auths: make([]diskAuth, 0, len(l.order))}
	for _, k := range l.order {
		if a := l.auths[k]; a != nil {
			c.Auths = append(c.Auths, p.disk(a))
		}
	}
	for pan, card := range l.cards {
		c.Balances[p.card(pan)] = card.Balance
	}
	return c
}

func (p *ledgerFile) writeSnap(c diskChange) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	f, err := p.createSnap()
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	w.Write(b)
	return p.finishSnap(f, w)
}

// createSnap opens ledger.snap.tmp for a new snapshot.
func (p *ledgerFile) createSnap() (*os.File, error) {
	snap := filepath.Join(p.dir, "ledger.snap")
	f, err := os.OpenFile(snap+".tmp", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ledger %s: %w", snap, err)
	}
	return f, nil
}

// syncSnap writes what w holds of a snapshot to the disk.
func syncSnap(f *os.File, w *bufio.Writer) error {
	if err := w.Flush(); err != nil {
		return fmt.Errorf("ledger %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("ledger %s: %w", f.Name(), err)
	}
	return nil
}

// finishSnap syncs and closes a snapshot written to f through w, then installs it.
func (p *ledgerFile) finishSnap(f *os.File, w *bufio.Writer) error {
	if err := syncSnap(f, w); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("ledger %s: %w", f.Name(), err)
	}
	return p.installSnap()
}

// snapSyncEvery is how much of a background snapshot is written before it is synced: the
// snapshot of a full ledger is about 190 MB, and left to the rename that installs it (ext4
// starts writing a file back when it replaces another), it went to the disk in one burst that
// the journal's WAL flushes queued behind: the soak's slowest second, p99 426 ms.
var snapSyncEvery = 4 << 20

// installSnap makes ledger.snap.tmp (written and synced) the snapshot; it holds everything the
// old log did, which goes once the rename is durable.
func (p *ledgerFile) installSnap() error {
	snap := filepath.Join(p.dir, "ledger.snap")
	if err := os.Rename(snap+".tmp", snap); err != nil {
		return err
	}
	if d, err := os.Open(p.dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("ledger %s: %w", p.dir, err)
		}
	}
	if err := os.Remove(filepath.Join(p.dir, "ledger.log.old")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (p *ledgerFile) openLog() error {
	f, err := os.OpenFile(filepath.Join(p.dir, "ledger.log"), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("ledger %s: %w", p.dir, err)
	}
	p.f, p.w, p.lines = f, bufio.NewWriterSize(f, 4096), 0
	return nil
}

func (p *ledgerFile) closeLog() {
	if p.f != nil {
		_ = p.w.Flush()
		_ = p.f.Close()
		p.f = nil
	}
}

// compact writes the retained state as the snapshot and starts an empty log, now (at open and
// at close; under the lock, no background snapshot under way).
func (l *Ledger) compact() error {
	p := l.file
	p.closeLog()
	if err := p.writeSnap(l.state()); err != nil {
		return err
	}
	return p.openLog()
}

// compactBehind starts a snapshot in the background (under the lock): the keys of the
// retained authorisations and the balances are copied, the log in use becomes ledger.log.old
// and a new log begins at once. The writer then takes the lock for snapChunk authorisations at
// a time, copies them and lets go, and sleeps between chunks (three times as long as the chunk
// took, so that it takes at most a quarter of a core, and at least snapPause): a ledger of 500,000
// authorisations (190 MB of JSON) was copied whole under the lock (requests held 100-300 ms)
// and marshalled in one piece (a core for seconds, and a 190 MB buffer for the collector).
//
// The snapshot is fuzzy: an authorisation changed while it is written may be in it as it was
// at the copy of the keys or as it is later. Every change after the copy is in the new log,
// with absolute values, so a restart (the snapshot, then ledger.log.old, then ledger.log)
// ends with each authorisation as its last change left it.
func (l *Ledger) compactBehind() error {
	p := l.file
	if !p.compacting.CompareAndSwap(false, true) {
		return nil // the previous one is still being written: the log grows a little longer
	}
	keys := slices.Clone(l.order)
	bal := make(map[string]int64, len(l.cards))
	for pan, card := range l.cards {
		bal[p.card(pan)] = card.Balance
	}
	p.closeLog()
	if err := os.Rename(filepath.Join(p.dir, "ledger.log"), filepath.Join(p.dir, "ledger.log.old")); err != nil {
		p.compacting.Store(false)
		_ = p.openLogAppend()
		return fmt.Errorf("ledger %s: %w", p.dir, err)
	}
	if err := p.openLog(); err != nil {
		p.compacting.Store(false)
		return err
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer p.compacting.Store(false)
		if err := l.writeSnapPaced(keys, bal); err != nil {
			p.bgErr.Store(&err)
		}
	}()
	return nil
}

// Pacing of a background snapshot (variables for tests; snapHook runs between chunks).
var (
	snapChunk = 1000
	snapPause = time.Millisecond
	snapHook  func(done int)
)

// writeSnapPaced writes the snapshot of the authorisations named by keys (as they are when
// each chunk is read) and the balances bal, in the format writeSnap writes.
func (l *Ledger) writeSnapPaced(keys []string, bal map[string]int64) error {
	p := l.file
	f, err := p.createSnap()
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 256<<10)
	b, err := json.Marshal(bal)
	if err != nil {
		return err
	}
	w.WriteString(`{"balances":`)
	w.Write(b)
	w.WriteString(`,"auths":[`)
	chunk := make([]Auth, 0, snapChunk)
	first := true
	unsynced := 0
	for i := 0; i < len(keys); i += snapChunk {
		t0 := time.Now()
		chunk = chunk[:0]
		l.mu.Lock()
		for _, k := range keys[i:min(i+snapChunk, len(keys))] {
			if a := l.auths[k]; a != nil {
				chunk = append(chunk, *a)
			}
		}
		l.mu.Unlock()
		for i := range chunk {
			b, err := json.Marshal(p.disk(&chunk[i]))
			if err != nil {
				return err
			}
			if !first {
				w.WriteByte(',')
			}
			first = false
			w.Write(b)
			unsynced += len(b) + 1
		}
		if unsynced >= snapSyncEvery {
			if err := syncSnap(f, w); err != nil {
				return err
			}
			unsynced = 0
		}
		if snapHook != nil {
			snapHook(i + len(chunk))
		}
		// at most a quarter of a core: the issuer's answers share the machine with it
		time.Sleep(max(snapPause, 3*time.Since(t0)))
	}
	w.WriteString("]}")
	return p.finishSnap(f, w)
}

func (p *ledgerFile) openLogAppend() error {
	f, err := os.OpenFile(filepath.Join(p.dir, "ledger.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	p.f, p.w = f, bufio.NewWriterSize(f, 4096)
	return nil
}

// save appends what a request changed: its own authorisation, the original it refers to and
// (for a void) the purchase behind that, with their cards' balances.
func (l *Ledger) save(req *upstream.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.file
	if p == nil || p.f == nil {
		return
	}
	var c diskChange
	seen := map[string]bool{}
	add := func(k string) *Auth {
		a := l.auths[k]
		if a == nil || seen[k] {
			return nil
		}
		seen[k] = true
		c.Auths = append(c.Auths, p.disk(a))
		if c.Balances == nil {
			c.Balances = map[string]int64{}
		}
		c.Balances[p.ref(a.PAN)] = l.cards[a.PAN].Balance
		return a
	}
	add(upstream.Key(req))
	if req.Original != "" {
		if o := add(upstream.OriginalKey(req.Original)); o != nil && o.Of != "" {
			add(o.Of)
		}
	}
	if len(c.Auths) == 0 {
		return
	}
	b, _ := json.Marshal(c)
	b = append(b, '\n')
	if _, err := p.w.Write(b); err == nil {
		err = p.w.Flush() // one write per change: a killed process loses nothing written before
		if err != nil && p.err == nil {
			p.err = err
		}
	} else if p.err == nil {
		p.err = err
	}
	p.lines++
	if e := p.bgErr.Swap(nil); e != nil && p.err == nil {
		p.err = *e
	}
	// a snapshot costs the whole ledger: once the log is as long as the ledger is large (and at
	// least compactEvery), so that each change pays for a constant share of them
	if p.lines >= max(compactEvery, len(l.order)) {
		if err := l.compactBehind(); err != nil && p.err == nil {
			p.err = err
		}
	}
}

// evict forgets authorisations past the retention or beyond MaxAuths, oldest first. It runs
// for every authorisation recorded and forgets what is due then, about one at a time once the
// ledger is full, so that no request waits behind a mass eviction: forgetting an eighth of
// 500,000 at once, and copying the rest, held the ledger's lock for 114 ms, which the soak saw
// as its worst minute. The order slice is resliced from the front; append moves what is left
// when it outgrows its array (amortised O(1) per authorisation).
func (l *Ledger) evict() {
	max, keep := l.MaxAuths, l.Retention
	if max <= 0 {
		max = DefaultMaxAuths
	}
	if keep <= 0 {
		keep = DefaultRetention
	}
	cutoff := l.now().Add(-keep)
	n := 0
	for n < len(l.order) {
		a := l.auths[l.order[n]]
		if a != nil && len(l.order)-n <= max && !a.Added.Before(cutoff) {
			break
		}
		if a != nil {
			delete(l.auths, l.order[n])
		}
		n++
	}
	if n > 0 {
		clear(l.order[:n]) // the array keeps its slots until append moves it; not the keys
		l.order = l.order[n:]
		l.evicted += n
	}
}

func (l *Ledger) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// Close writes the snapshot and closes the ledger's files.
func (l *Ledger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file == nil || l.file.f == nil {
		return nil
	}
	l.file.wg.Wait() // a background snapshot (it takes no lock)
	err := l.compact()
	if l.file.f != nil {
		_ = l.file.w.Flush()
		_ = l.file.f.Close()
		l.file.f = nil
	}
	return err
}
