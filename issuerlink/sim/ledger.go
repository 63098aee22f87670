// Package sim is the simulated issuer: its own ISO 8583 listener in the upstream dialect, test
// cards with PINs, expiry, status and balances, risk limits by acquiring institution, MCC and
// merchant (the real cause of 61), a ledger that proves nothing was charged twice or left
// charged, and fault injection on demand.
package sim

import (
	"fmt"
	"sync"
	"time"

	"github.com/shoudan/shoudan/spec"
	"github.com/shoudan/shoudan/spec/upstream"
)

// Card is a test card.
type Card struct {
	PAN     string
	PIN     string
	Expiry  string // YYMM
	Status  string // active, lost, stolen
	Balance int64  // fen
}

// Auth is an authorisation the issuer holds: what a void or reversal will undo.
type Auth struct {
	Key       string // upstream MTI + trace + transmission time + acquirer
	PAN       string
	Kind      string // purchase, void, refund
	Amount    int64
	State     string // approved, voided, reversed
	AuthCode  string
	Of        string // a void: the key of the purchase it voided
	Reversals int    // reversal requests that changed the ledger: never more than 1
	Repeats   int    // reversal requests answered idempotently
	// What the clearing file lists (clearing.go): the acquirer's RRN (F37), the upstream trace
	// (F11) and transmission time (F7), merchant and terminal, and when it was approved.
	RRN, Trace, Transmission, MID, TID string
	At                                 time.Time
	Added                              time.Time // when the issuer recorded it (retention)
}

// Ledger is the issuer's books.
type Ledger struct {
	mu    sync.Mutex
	cards map[string]*Card
	auths map[string]*Auth
	order []string
	// Retention and MaxAuths bound what the ledger remembers (persist.go); zero = the defaults.
	Retention time.Duration
	MaxAuths  int
	Now       func() time.Time
	file      *ledgerFile
	evicted   int
	byRRN     map[string]string // approved refunds and voids by kind, acquirer and RRN: their keys (see repeat)
}

func NewLedger(cards []Card) *Ledger {
	l := &Ledger{cards: map[string]*Card{}, auths: map[string]*Auth{}}
	for i := range cards {
		c := cards[i]
		l.cards[c.PAN] = &c
	}
	return l
}

// Snapshot is the ledger as the control endpoint shows it (PANs masked).
type Snapshot struct {
	Balances map[string]int64 `json:"balances"`
	Auths    []AuthView       `json:"auths"`
	// Held is the sum charged and not undone by approved purchases: what a test expects to be 0
	// after every purchase was reversed.
	Held            int64 `json:"held"`
	ReversalsTwice  int   `json:"reversals_applied_twice"`
	ReversalsRepeat int   `json:"reversal_repeats"`
}

type AuthView struct {
	Key       string `json:"key"`
	PAN       string `json:"pan"`
	Kind      string `json:"kind"`
	Amount    int64  `json:"amount"`
	State     string `json:"state"`
	Reversals int    `json:"reversals"`
}

func (l *Ledger) Snapshot() Snapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := Snapshot{Balances: map[string]int64{}}
	for pan, c := range l.cards {
		s.Balances[spec.MaskPAN(pan)] = c.Balance
	}
	for _, k := range l.order {
		a := l.auths[k]
		s.Auths = append(s.Auths, AuthView{a.Key, spec.MaskPAN(a.PAN), a.Kind, a.Amount, a.State, a.Reversals})
		if a.Kind == "purchase" && a.State == "approved" {
			s.Held += a.Amount
		}
		if a.Reversals > 1 {
			s.ReversalsTwice++
		}
		s.ReversalsRepeat += a.Repeats
	}
	return s
}

// Each calls f with a copy of every authorisation, in the order they were made.
func (l *Ledger) Each(f func(Auth)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range l.order {
		f(*l.auths[k])
	}
}

func (l *Ledger) record(a *Auth) {
	a.Added = l.now()
	if _, had := l.auths[a.Key]; !had {
		l.order = append(l.order, a.Key)
	}
	l.auths[a.Key] = a
	l.evict()
}

// repeat finds an approved refund or void already applied under the request's RRN (F37) from
// the same acquirer: a repeated advice (0221, or a store-and-forward retry after a lost answer)
// is acknowledged with the first one's authorisation code and changes nothing. The index is
// derived from the books (rebuilt after a restart, forgetting what eviction forgot). Called with mu.
func (l *Ledger) repeat(req *upstream.Message, kind string) *Auth {
	if req.RRN == "" {
		return nil
	}
	if l.byRRN == nil || len(l.byRRN) > 2*len(l.auths)+1024 {
		l.byRRN = map[string]string{}
		for k, a := range l.auths {
			if a.RRN != "" && (a.Kind == "refund" || a.Kind == "void") && len(k) >= 31 {
				l.byRRN[a.Kind+"/"+k[20:31]+"/"+a.RRN] = k
			}
		}
	}
	a := l.auths[l.byRRN[rrnKey(kind, req)]]
	if a != nil {
		a.Repeats++
	}
	return a
}

// rrnKey indexes an applied refund or void by kind, acquirer (as F90 writes it) and RRN.
func rrnKey(kind string, req *upstream.Message) string {
	return kind + "/" + upstream.Key(req)[20:31] + "/" + req.RRN
}

// remember indexes an applied refund or void for repeat. Called with mu.
func (l *Ledger) remember(req *upstream.Message, a *Auth) {
	if req.RRN == "" || l.byRRN == nil {
		return // built from the books at the next repeat check
	}
	l.byRRN[rrnKey(a.Kind, req)] = a.Key
}

var authSeq struct {
	sync.Mutex
	n int
}

func authCode() string {
	authSeq.Lock()
	defer authSeq.Unlock()
	authSeq.n++
	return fmt.Sprintf("%06d", (authSeq.n*7919+int(time.Now().UnixNano()/1e3))%1000000)
}
