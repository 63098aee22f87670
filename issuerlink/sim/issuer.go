package sim

import (
	"time"

	"github.com/shoudan/shoudan/spec/keys"
	"github.com/shoudan/shoudan/spec/upstream"
)

// Limits are the issuer's risk limits per transaction, in fen: a purchase above any that
// applies is declined 61.
type Limits struct {
	Institution map[string]int64 // by acquiring institution (F32)
	MCC         map[string]int64 // by MCC (F18)
	Merchant    map[string]int64 // by MID (F42)
}

// Issuer decides upstream requests against its cards, limits and ledger.
type Issuer struct {
	Ledger  *Ledger
	Limits  Limits
	ZoneKey []byte // PIN blocks arrive under the zone PIN key (index 00: agreed out of band)
	// ZMK is the zone master key (AES) that key changes arrive under; nil: key changes are
	// refused (30).
	ZMK []byte
	Now func() time.Time
	// zone holds the zone PIN keys received by key changes, by index (F53): the newest few, so
	// a PIN block translated under the previous key just before a change still verifies
	zone zoneKeys
	// early holds the keys of originals whose reversal arrived first (answered 25): a late
	// original under such a key is declined, never charged, as real issuers do when a reversal
	// overtakes its original (guarded by the ledger's lock)
	early map[string]bool
}

// overtaken reports, under the ledger lock, whether req's reversal arrived before it.
func (is *Issuer) overtaken(req *upstream.Message) bool { return is.early[upstream.Key(req)] }

// Handle answers one upstream request. It is safe for concurrent use.
func (is *Issuer) Handle(req *upstream.Message) *upstream.Message {
	resp := *req
	resp.MTI = req.MTI[:2] + string(req.MTI[2]+1) + "0"
	resp.PINBlock, resp.Track2, resp.ICC, resp.PAN, resp.Expiry, resp.SecCtl, resp.PINMaxLen = nil, "", nil, req.PAN, "", "", ""
	switch {
	case req.MTI == "0800" && req.NetCode == upstream.NetKeyChange:
		resp.RespCode, resp.Additional = is.keyChange(req)
	case req.MTI == "0800" || req.MTI == "0820":
		resp.RespCode = "00"
	case req.MTI == "0420" || req.MTI == "0421":
		resp.RespCode = is.reverse(req)
	case req.MTI == "0200" && req.ProcCode == upstream.ProcBalance:
		resp.RespCode = is.balance(req, &resp)
	case req.MTI == "0200" && req.ProcCode == upstream.ProcPurchase:
		resp.RespCode, resp.AuthCode = is.purchase(req)
	case req.MTI == "0200" && req.ProcCode == upstream.ProcVoid:
		resp.RespCode, resp.AuthCode = is.void(req)
	case req.MTI == "0220" || req.MTI == "0221":
		resp.RespCode, resp.AuthCode = is.refund(req)
	default:
		resp.RespCode = "12"
	}
	if resp.RespCode == "00" && (req.MTI == "0200" || req.MTI == "0220" || req.MTI == "0221") && req.ProcCode != upstream.ProcBalance {
		is.Ledger.stamp(req, is.Now())
	}
	if req.MTI != "0800" && req.MTI != "0820" && req.ProcCode != upstream.ProcBalance {
		is.Ledger.save(req)
	}
	return &resp
}

// check is what every card-present request goes through: card, status, expiry, PIN.
func (is *Issuer) check(req *upstream.Message) (*Card, string) {
	c := is.Ledger.cards[req.PAN]
	if c == nil {
		return nil, "14"
	}
	switch c.Status {
	case "lost":
		return nil, "41"
	case "stolen":
		return nil, "43"
	}
	exp := req.Expiry
	if exp == "" {
		exp = c.Expiry
	}
	if exp < is.Now().Format("0601") || exp != c.Expiry {
		return nil, "54"
	}
	if len(req.PINBlock) > 0 {
		zk := is.zoneKey(upstream.ZoneIndex(req.SecCtl))
		if zk == nil {
			return nil, "55" // a key index it never received: the PIN cannot be checked
		}
		pin, err := keys.ClearPIN(zk, req.PINBlock, req.PAN)
		if err != nil || pin != c.PIN {
			return nil, "55"
		}
	}
	return c, ""
}

func (is *Issuer) overLimit(req *upstream.Message) bool {
	for _, lim := range []struct {
		m map[string]int64
		k string
	}{{is.Limits.Institution, req.Acquirer}, {is.Limits.MCC, req.MCC}, {is.Limits.Merchant, req.MID}} {
		if v, ok := lim.m[lim.k]; ok && req.Amount > v {
			return true
		}
	}
	return false
}

func (is *Issuer) purchase(req *upstream.Message) (string, string) {
	l := is.Ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	if is.overtaken(req) {
		return "12", ""
	}
	c, code := is.check(req)
	if code != "" {
		return code, ""
	}
	if is.overLimit(req) {
		return "61", ""
	}
	if c.Balance < req.Amount {
		return "51", ""
	}
	c.Balance -= req.Amount
	a := &Auth{Key: upstream.Key(req), PAN: req.PAN, Kind: "purchase", Amount: req.Amount, State: "approved", AuthCode: authCode()}
	l.record(a)
	return "00", a.AuthCode
}

func (is *Issuer) balance(req *upstream.Message, resp *upstream.Message) string {
	l := is.Ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	c, code := is.check(req)
	if code != "" {
		return code
	}
	resp.Amount = c.Balance
	return "00"
}

func (is *Issuer) void(req *upstream.Message) (string, string) {
	l := is.Ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	if is.overtaken(req) {
		return "12", ""
	}
	if a := l.repeat(req, "void"); a != nil {
		return "00", a.AuthCode
	}
	orig := l.auths[upstream.OriginalKey(req.Original)]
	if orig == nil || orig.Kind != "purchase" {
		return "25", ""
	}
	if orig.State != "approved" {
		return "12", ""
	}
	if orig.Amount != req.Amount {
		return "64", ""
	}
	orig.State = "voided"
	l.cards[orig.PAN].Balance += orig.Amount
	l.record(&Auth{Key: upstream.Key(req), PAN: orig.PAN, Kind: "void", Amount: req.Amount, State: "approved", AuthCode: authCode(), Of: orig.Key})
	a := l.auths[upstream.Key(req)]
	l.remember(req, a)
	return "00", a.AuthCode
}

func (is *Issuer) refund(req *upstream.Message) (string, string) {
	l := is.Ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	if is.overtaken(req) {
		return "12", ""
	}
	if a := l.repeat(req, "refund"); a != nil {
		return "00", a.AuthCode
	}
	pan := req.PAN
	if pan == "" && req.Original != "" {
		// a back-office refund carries no card: the original purchase (F90) names it
		orig := l.auths[upstream.OriginalKey(req.Original)]
		if orig == nil || orig.Kind != "purchase" {
			return "25", ""
		}
		pan = orig.PAN
	}
	c := l.cards[pan]
	if c == nil {
		return "14", ""
	}
	c.Balance += req.Amount
	a := &Auth{Key: upstream.Key(req), PAN: pan, Kind: "refund", Amount: req.Amount, State: "approved", AuthCode: authCode()}
	l.record(a)
	l.remember(req, a)
	return "00", a.AuthCode
}

// reverse undoes the original once; a repeat (or a reversal of something already reversed) is
// answered 00 without touching the ledger again. A reversal of nothing is 25, and the original,
// should it still arrive (delayed in the network), is then declined.
func (is *Issuer) reverse(req *upstream.Message) string {
	l := is.Ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	orig := l.auths[upstream.OriginalKey(req.Original)]
	if orig == nil {
		if is.early == nil {
			is.early = map[string]bool{}
		}
		is.early[upstream.OriginalKey(req.Original)] = true
		return "25"
	}
	switch orig.State {
	case "reversed":
		orig.Repeats++
		return "00"
	case "voided":
		// reversing a purchase that was voided afterwards: the void already released the funds
		orig.Repeats++
		return "00"
	}
	switch orig.Kind {
	case "purchase":
		l.cards[orig.PAN].Balance += orig.Amount
	case "void": // reversing a void re-charges the purchase it voided
		l.cards[orig.PAN].Balance -= orig.Amount
		if p := l.auths[orig.Of]; p != nil {
			p.State = "approved"
		}
	}
	orig.State = "reversed"
	orig.Reversals++
	return "00"
}
