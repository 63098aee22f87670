// Package terminals is the merchant and terminal registry and the acquirer's operator rules.
// Everything is read through an immutable Registry snapshot: a reload builds a new snapshot and
// swaps it in whole, so a transaction never sees half of an old config and half of a new one.
package terminals

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Environment is the listener environment a terminal is registered in.
type Environment string

const (
	Production Environment = "production"
	Test       Environment = "test"
)

// Merchant is an acquiring merchant.
type Merchant struct {
	MID           string
	Name          string // Chinese name
	NameEN        string
	MCC           string // operator-set, or digits 8–11 of the MID
	Enabled       bool
	Direct        bool // direct connection (直联) configured
	QPS           bool // 小额双免 enabled
	QPSRegistered time.Time
	RefundAllowed bool
	Acquirer      string // acquiring institution code (F32)
}

// OnWhitelist reports whether the merchant's 双免 whitelist registration is effective on day:
// registration is effective T+1, so it must be strictly before day.
func (m *Merchant) OnWhitelist(day time.Time) bool {
	if m.QPSRegistered.IsZero() {
		return false
	}
	y, mo, d := day.Date()
	return m.QPSRegistered.Before(time.Date(y, mo, d, 0, 0, 0, 0, day.Location()))
}

// Terminal is a registered POS terminal.
type Terminal struct {
	TID    string
	MID    string
	Env    Environment
	Serial string
	TMK    []byte
	QPS    bool
}

// Rules are the acquirer's operator rules.
type Rules struct {
	CashMCCs         []string
	QPSLimit         int64 // fen
	MinSDK           Version
	RefundWindowDays int
}

// DefaultRules are protocol.md §7's defaults.
func DefaultRules() Rules {
	return Rules{CashMCCs: []string{"6010", "6011", "6050", "6051"}, QPSLimit: 100000, MinSDK: Version{3, 0, 0}, RefundWindowDays: 365}
}

// IsCash reports whether mcc is on the cash / quasi-cash list.
func (r Rules) IsCash(mcc string) bool { return slices.Contains(r.CashMCCs, mcc) }

// Registry is an immutable snapshot of merchants, terminals and rules.
type Registry struct {
	Rules     Rules
	merchants map[string]*Merchant
	terminals map[string]*Terminal // key TID|MID
}

// NewRegistry builds a snapshot; the caller has validated the entries.
func NewRegistry(rules Rules, ms []Merchant, ts []Terminal) *Registry {
	r := &Registry{Rules: rules, merchants: map[string]*Merchant{}, terminals: map[string]*Terminal{}}
	for i := range ms {
		r.merchants[ms[i].MID] = &ms[i]
	}
	for i := range ts {
		r.terminals[ts[i].TID+"|"+ts[i].MID] = &ts[i]
	}
	return r
}

// Merchant returns a merchant by MID.
func (r *Registry) Merchant(mid string) *Merchant { return r.merchants[mid] }

// Terminal returns a terminal by TID and MID.
func (r *Registry) Terminal(tid, mid string) *Terminal { return r.terminals[tid+"|"+mid] }

// Merchants lists merchants sorted by MID.
func (r *Registry) Merchants() []*Merchant {
	out := make([]*Merchant, 0, len(r.merchants))
	for _, m := range r.merchants {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *Merchant) int { return strings.Compare(a.MID, b.MID) })
	return out
}

// Terminals lists terminals sorted by MID then TID.
func (r *Registry) Terminals() []*Terminal {
	out := make([]*Terminal, 0, len(r.terminals))
	for _, t := range r.terminals {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *Terminal) int { return strings.Compare(a.MID+a.TID, b.MID+b.TID) })
	return out
}

// Holder serves the current snapshot and swaps in new ones.
type Holder struct{ p atomic.Pointer[Registry] }

func NewHolder(r *Registry) *Holder { h := &Holder{}; h.p.Store(r); return h }

// Get returns the current snapshot; hold on to it for the whole transaction.
func (h *Holder) Get() *Registry { return h.p.Load() }

// Set swaps in a new snapshot.
func (h *Holder) Set(r *Registry) { h.p.Store(r) }

// Version is a dotted application / SDK version.
type Version [3]int

// ParseVersion reads "3", "3.2" or "3.2.1".
func ParseVersion(s string) (Version, error) {
	var v Version
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) == 0 || len(parts) > 3 || s == "" {
		return v, fmt.Errorf("version: expected 1 to 3 dotted numbers, found %q", s)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return v, fmt.Errorf("version: expected a number in part %d, found %q", i+1, p)
		}
		v[i] = n
	}
	return v, nil
}

// Less compares versions.
func (v Version) Less(o Version) bool { return slices.Compare(v[:], o[:]) < 0 }

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]) }

// MaskKey describes a key for logs without showing it: length and check value only.
func MaskKey(k []byte) string { return fmt.Sprintf("[%d-byte key]", len(k)) }

func parseHexKey(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || (len(b) != 8 && len(b) != 16) {
		return nil, fmt.Errorf("expected 16 or 32 hex digits (a DES or double-length key)")
	}
	return b, nil
}
