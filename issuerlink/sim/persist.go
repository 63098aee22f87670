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
	"time"

	"github.com/shoudan/shoudan/spec"
	"github.com/shoudan/shoudan/spec/upstream"
)

// The issuer's books survive a restart, as a real issuer's do (a void after a restart finds
// its purchase instead of 25), and stay bounded in memory and on disk:
//
//   - every change is appended to <dir>/ledger.log as one JSON line: the authorisations it
//     touched and the balances of their cards; at open, and every compactEvery lines, the
//     retained state is written to <dir>/ledger.snap and the log starts again;
//   - authorisations are kept for Retention (what voids, reversals and the clearing file
//     need: a void is same-day, a reversal follows within minutes, the clearing file is
//     daily) and at most MaxAuths of them; older ones are forgotten, oldest first, and a
//     void or reversal of one is answered 25 like a real issuer's past its window;
//   - PANs are never written: a card is named by a keyed hash (HMAC-SHA256 under a key
//     derived from the zone key) and shown masked.

// Bounds of the ledger's memory.
const (
	DefaultRetention = 72 * time.Hour
	DefaultMaxAuths  = 500000
	compactEvery     = 200000
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
	err   error // the first write error, shown by the control endpoint
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
	p := &ledgerFile{dir: dir, key: mk.Sum(nil), byRef: map[string]string{}}
	for pan := range l.cards {
		p.byRef[p.ref(pan)] = pan
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
	if f, err := os.Open(filepath.Join(dir, "ledger.log")); err == nil {
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

func (p *ledgerFile) disk(a *Auth) diskAuth {
	return diskAuth{Key: a.Key, Card: p.ref(a.PAN), Masked: spec.MaskPAN(a.PAN), Kind: a.Kind, Amount: a.Amount, State: a.State, AuthCode: a.AuthCode,
		Of: a.Of, Reversals: a.Reversals, Repeats: a.Repeats, RRN: a.RRN, Trace: a.Trace, Transmission: a.Transmission, MID: a.MID, TID: a.TID,
		At: a.At, Added: a.Added}
}

// compact writes the retained state as the snapshot and starts an empty log.
func (l *Ledger) compact() error {
	p := l.file
	if p.f != nil {
		_ = p.w.Flush()
		_ = p.f.Close()
		p.f = nil
	}
	c := diskChange{Balances: map[string]int64{}}
	for _, k := range l.order {
		c.Auths = append(c.Auths, p.disk(l.auths[k]))
	}
	for pan, card := range l.cards {
		c.Balances[p.ref(pan)] = card.Balance
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	snap := filepath.Join(p.dir, "ledger.snap")
	if err := os.WriteFile(snap+".tmp", b, 0o600); err != nil {
		return fmt.Errorf("ledger %s: %w", snap, err)
	}
	if err := os.Rename(snap+".tmp", snap); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(p.dir, "ledger.log"), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("ledger %s: %w", p.dir, err)
	}
	p.f, p.w, p.lines = f, bufio.NewWriterSize(f, 4096), 0
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
	if p.lines >= compactEvery {
		if err := l.compact(); err != nil && p.err == nil {
			p.err = err
		}
	}
}

// evict forgets authorisations past the retention or beyond MaxAuths, oldest first. The order
// slice is rewritten only once an eighth of it can go (amortised O(1) per authorisation).
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
		l.order = append(l.order[:0:0], l.order[n:]...)
		l.evicted += n
	}
}

// maybeEvict runs evict when the ledger is an eighth over MaxAuths, or every 4096
// authorisations for the retention.
func (l *Ledger) maybeEvict() {
	max := l.MaxAuths
	if max <= 0 {
		max = DefaultMaxAuths
	}
	l.since++
	if len(l.order) > max+max/8 || l.since >= 4096 {
		l.since = 0
		l.evict()
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
	err := l.compact()
	if l.file.f != nil {
		_ = l.file.w.Flush()
		_ = l.file.f.Close()
		l.file.f = nil
	}
	return err
}
