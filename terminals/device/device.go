// Package device is a simulated countertop POS terminal: it signs on (decrypting its working keys
// under the TMK and checking their check values), builds every request of protocol.md §3 the way a
// real terminal does (MAC over the bytes it sends, format-0 PIN blocks under its PIN key, device
// information with the serial-number check value) and checks the MAC of approvals it receives.
// The tests, `shoudan pos`, `shoudan pos load` and `shoudan replay` all speak through it.
package device

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/spec"
	"github.com/shoudan/shoudan/spec/keys"
	"github.com/shoudan/shoudan/spec/money"
	"github.com/shoudan/shoudan/spec/pos"
)

// Config identifies a terminal and what it was provisioned with.
type Config struct {
	TID, MID string
	Serial   string
	SDK      string // application / SDK version sent in F59 A2 05
	TMK      []byte
	TLS      *tls.Config // nil = plain TCP
	NMI      string      // sign-on key layout: 001, 003 (default) or 004
	TestMode bool        // header digit 5 = 1
	Timeout  time.Duration
	Operator string // operator code (F63.1) sent at sign-on and settlement; default "01"
	// LocalAddr is the IP address to dial from ("" = the system's choice); tests use another
	// loopback address to tell an attacker from the genuine terminal.
	LocalAddr string
	// BeforeSend, when set, sees each request frame (without LEN) before it is written (tests
	// send mutated copies of it first).
	BeforeSend func(frame []byte)
}

func (c Config) operator() string {
	if c.Operator == "" {
		return "01 "
	}
	return fmt.Sprintf("%-3.3s", c.Operator)
}

// DemoTMK is the published test master key the simulated terminals are loaded with when the
// config gives a terminal `tmk: demo` (the switch imports the same value into its security
// module at start). A test key, printed in every manual of this kind: never a real terminal's.
var DemoTMK = []byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10}

// TMKOf is the master key a simulated terminal holds for a registered terminal: the demo key
// when it is configured with one, else nil (a real key lives only in the real terminal and the
// security module).
func TMKOf(demo bool) []byte {
	if demo {
		return DemoTMK
	}
	return nil
}

// State is what a terminal remembers between transactions (a real one keeps it in flash).
type State struct {
	Batch string           `json:"batch"`
	STAN  int              `json:"stan"`
	Keys  keys.WorkingKeys `json:"keys"`
}

// Terminal is one simulated POS terminal on its own connection. Its methods are safe for one
// goroutine at a time, like the device itself.
type Terminal struct {
	Config
	State
	conn net.Conn
	mu   sync.Mutex
}

// ConnState is the TLS state of the terminal's connection (the zero value on plain TCP).
func (t *Terminal) ConnState() tls.ConnectionState {
	if tc, ok := t.conn.(*tls.Conn); ok {
		return tc.ConnectionState()
	}
	return tls.ConnectionState{}
}

// Dial connects a terminal to a switch listener.
func Dial(addr string, c Config) (*Terminal, error) {
	if c.NMI == "" {
		c.NMI = "003"
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	if c.SDK == "" {
		c.SDK = "3.2.1"
	}
	dialer := net.Dialer{Timeout: c.Timeout}
	if c.LocalAddr != "" {
		dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(c.LocalAddr)}
	}
	conn, err := dialer.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if c.TLS != nil { // the handshake now, so that a refused certificate is Dial's error
		tcfg := c.TLS
		if tcfg.ServerName == "" && !tcfg.InsecureSkipVerify {
			tcfg = tcfg.Clone()
			tcfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(conn, tcfg)
		_ = conn.SetDeadline(time.Now().Add(c.Timeout))
		if err := tc.Handshake(); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS: %w", err)
		}
		_ = conn.SetDeadline(time.Time{})
		conn = tc
	}
	return &Terminal{Config: c, State: State{Batch: "000000"}, conn: conn}, nil
}

// Close hangs up.
func (t *Terminal) Close() error { return t.conn.Close() }

// Conn is the terminal's socket (tests write raw bytes on it).
func (t *Terminal) Conn() net.Conn { return t.conn }

// Card is what the terminal reads from a card and its holder.
type Card struct {
	PAN       string
	Expiry    string // YYMM
	PIN       string // empty: no PIN entered
	EntryMode string // F22: 051 chip, 021 swipe, 071/072 contactless (072: no PIN)
	CardSeq   string
	Track2    string
	ICC       []byte
}

// Chip, Swipe and Tap are the usual ways a card is read.
func Chip(pan, expiry, pin string) Card {
	return Card{PAN: pan, Expiry: expiry, PIN: pin, EntryMode: "051", CardSeq: "001", ICC: []byte{0x9F, 0x26, 0x08, 1, 2, 3, 4, 5, 6, 7, 8}}
}

func Swipe(pan, expiry, pin string) Card {
	return Card{PAN: pan, Expiry: expiry, PIN: pin, EntryMode: "021", Track2: pan + "=" + expiry + "2010000000000"}
}

// Tap is a contactless read: without a PIN it is a 双免 (no-PIN, no-signature) candidate, F22 072.
func Tap(pan, expiry, pin string) Card {
	c := Card{PAN: pan, Expiry: expiry, PIN: pin, EntryMode: "071", CardSeq: "001", ICC: []byte{0x9F, 0x26, 0x08, 8, 7, 6, 5, 4, 3, 2, 1}}
	if pin == "" {
		c.EntryMode = "072"
	}
	return c
}

// Result is one exchange: what was sent and what came back.
type Result struct {
	Kind     *pos.Kind
	Request  []byte // the request frame without LEN
	Sent     any    // the typed request
	Raw      []byte // the response frame without LEN
	Frame    *pos.Frame
	Resp     Response
	MACValid bool // the response carried a MAC and it verified under the current TAK
	Latency  time.Duration
}

// Code is the response code (F39).
func (r *Result) Code() string { return r.Resp.RespCode }

// Response is every field a response may carry.
type Response struct {
	pos.FinancialResponse
	Totals string `iso8583:"48"`
}

// ErrMAC is returned when an approval's MAC does not verify: the terminal must not trust it.
var ErrMAC = errors.New("response MAC does not verify under the terminal's MAC key")

func (t *Terminal) head(k *pos.Kind) pos.Head {
	h := pos.Head{TPDU: [5]byte{0x60, 0x00, 0x03, 0x00, 0x00}, Header: [6]byte{0x60, 0x31, 0x00, 0x00, 0x00, 0x00}, MTI: k.MTI}
	if t.TestMode {
		h.Header[2] = 0x10
	}
	return h
}

func (t *Terminal) nextSTAN() string {
	t.STAN = t.STAN%999999 + 1
	return fmt.Sprintf("%06d", t.STAN)
}

func (t *Terminal) terminal(k *pos.Kind, stan string, f60 pos.F60) pos.Terminal {
	return pos.Terminal{Head: t.head(k), STAN: stan, TID: t.TID, MID: t.MID, Custom: f60.String()}
}

func (t *Terminal) f60(k *pos.Kind, readCap string) pos.F60 {
	nmi := "000"
	if len(k.NMI) > 0 {
		nmi = k.NMI[0]
	}
	return pos.F60{Type: k.Type, Batch: t.Batch, NMI: nmi, ReadCap: readCap, ICCond: "0"}
}

// Device is field 59 as this terminal sends it: serial, SDK version, and once signed on a random
// factor with its check value.
func (t *Terminal) Device() string {
	d := pos.Device{Type: "01", Serial: t.Serial, Version: t.SDK}
	if len(t.Keys.TAK) > 0 {
		d.Random = fmt.Sprintf("%06d", time.Now().UnixNano()%1000000)
		if mac, err := keys.MAC(t.Keys.TAK, []byte(d.Serial+d.Random)); err == nil {
			d.CheckValue = string(mac[:])
		}
	}
	return d.F59()
}

// Frame marshals a typed request of kind k and MACs it when k asks for it: the frame (without
// LEN) this terminal would send.
func (t *Terminal) Frame(k *pos.Kind, req any) ([]byte, error) {
	m, err := pos.Marshal(req)
	if err != nil {
		return nil, err
	}
	var mac pos.MACFunc
	if k.MAC {
		tak := t.Keys.TAK
		if len(tak) == 0 {
			tak = make([]byte, 8) // not signed on: the switch answers 77 before it looks at the MAC
		}
		mac = func(mab []byte) ([8]byte, error) { return keys.MAC(tak, mab) }
	}
	return pos.Encode(m, mac)
}

// Exchange sends a typed request of kind k (see Frame) and reads the answer.
func (t *Terminal) Exchange(k *pos.Kind, req any) (*Result, error) {
	b, err := t.Frame(k, req)
	if err != nil {
		return nil, err
	}
	res, err := t.RoundTrip(b)
	if err != nil {
		return nil, err
	}
	res.Kind, res.Sent = k, req
	return res, nil
}

// RoundTrip sends one frame (without LEN) and decodes the answer.
func (t *Terminal) RoundTrip(frame []byte) (*Result, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.BeforeSend != nil {
		t.BeforeSend(frame)
	}
	start := time.Now()
	_ = t.conn.SetDeadline(start.Add(t.Timeout))
	if _, err := t.conn.Write(pos.WithLen(frame)); err != nil {
		return nil, err
	}
	raw, err := pos.ReadFrame(t.conn)
	if err != nil {
		return nil, err
	}
	res := &Result{Request: frame, Raw: raw, Latency: time.Since(start)}
	if res.Frame, err = pos.Decode(raw); err != nil {
		return res, fmt.Errorf("response does not decode: %w", err)
	}
	if err := spec.Unmarshal(res.Frame.Msg, &res.Resp); err != nil {
		return res, fmt.Errorf("response fields: %w", err)
	}
	if res.Frame.Has(64) {
		ok, err := keys.VerifyMAC(t.Keys.TAK, res.Frame.MAB(), res.Frame.MAC())
		res.MACValid = err == nil && ok
		if !res.MACValid {
			return res, ErrMAC
		}
	}
	return res, nil
}

// SignOn asks for working keys (layout t.NMI), decrypts them with the TMK, checks their check
// values and takes the batch the switch gives.
func (t *Terminal) SignOn() (*Result, error) {
	f60 := pos.F60{Type: "00", Batch: t.Batch, NMI: t.NMI}
	res, err := t.Exchange(pos.SignOn, &pos.ManagementRequest{Terminal: t.terminal(pos.SignOn, t.nextSTAN(), f60), Operator: t.operator()})
	if err != nil || res.Code() != rc.Approved {
		return res, err
	}
	var r pos.SignOnResponse
	if err := spec.Unmarshal(res.Frame.Msg, &r); err != nil {
		return res, err
	}
	wk, err := keys.ParseKeyBlock(t.TMK, t.NMI, r.Keys)
	if err != nil {
		return res, err
	}
	got, err := pos.ParseF60(r.Custom)
	if err != nil {
		return res, fmt.Errorf("sign-on response: %w", err)
	}
	t.Keys, t.Batch = wk, got.Batch
	return res, nil
}

func (t *Terminal) management(k *pos.Kind) (*Result, error) {
	return t.Exchange(k, &pos.ManagementRequest{Terminal: t.terminal(k, t.nextSTAN(), pos.F60{Type: "00", Batch: t.Batch, NMI: k.NMI[0]})})
}

// SignOff and Echo are management messages without a MAC.
func (t *Terminal) SignOff() (*Result, error) { return t.management(pos.SignOff) }
func (t *Terminal) Echo() (*Result, error)    { return t.management(pos.Echo) }

func (t *Terminal) card(c Card) (pos.Card, error) {
	pc := pos.Card{PAN: c.PAN, Expiry: c.Expiry, CardSeq: c.CardSeq, Track2: c.Track2, ICC: c.ICC}
	if c.Track2 != "" {
		pc.PAN = ""
	}
	if c.PIN != "" {
		tpk := t.Keys.TPK
		if len(tpk) == 0 {
			tpk = make([]byte, 16) // not signed on: the switch answers 77 before it looks at the PIN
		}
		pb, err := keys.PINBlock(tpk, c.PIN, c.PAN)
		if err != nil {
			return pc, err
		}
		pc.PINBlock, pc.PINMaxLen = pb, "12"
		pc.SecCtl = "2600000000000000"
		if len(t.Keys.TPK) == 8 {
			pc.SecCtl = "2000000000000000"
		}
	}
	return pc, nil
}

func readCap(entry string) string {
	switch entry[:2] {
	case "02", "90":
		return "2"
	case "07":
		return "6"
	}
	return "5"
}

func (t *Terminal) payment(k *pos.Kind, c Card, amount int64) pos.Payment {
	return pos.Payment{ProcCode: k.ProcCode, Amount: amount, EntryMode: c.EntryMode, Cond: k.Cond, Currency: "156", Device: t.Device()}
}

// Purchase 消费 (a 双免 purchase is Tap without a PIN).
func (t *Terminal) Purchase(c Card, amount int64) (*Result, error) {
	pc, err := t.card(c)
	if err != nil {
		return nil, err
	}
	k := pos.Purchase
	req := &pos.PurchaseRequest{Terminal: t.terminal(k, t.nextSTAN(), t.f60(k, readCap(c.EntryMode))), Card: pc, Payment: t.payment(k, c, amount)}
	return t.Exchange(k, req)
}

// PurchaseRequest builds a purchase without sending it (tests alter it first).
func (t *Terminal) PurchaseRequest(c Card, amount int64) (*pos.PurchaseRequest, error) {
	pc, err := t.card(c)
	if err != nil {
		return nil, err
	}
	k := pos.Purchase
	return &pos.PurchaseRequest{Terminal: t.terminal(k, t.nextSTAN(), t.f60(k, readCap(c.EntryMode))), Card: pc, Payment: t.payment(k, c, amount)}, nil
}

// Balance 查询.
func (t *Terminal) Balance(c Card) (*Result, error) {
	pc, err := t.card(c)
	if err != nil {
		return nil, err
	}
	k := pos.BalanceInquiry
	return t.Exchange(k, &pos.BalanceInquiryRequest{Terminal: t.terminal(k, t.nextSTAN(), t.f60(k, readCap(c.EntryMode))), Card: pc,
		ProcCode: k.ProcCode, EntryMode: c.EntryMode, Cond: k.Cond, Currency: "156", Device: t.Device()})
}

// Void 消费撤销 of an original purchase (its result), read with card c.
func (t *Terminal) Void(c Card, orig *Result) (*Result, error) {
	pc, err := t.card(c)
	if err != nil {
		return nil, err
	}
	o := orig.Sent.(*pos.PurchaseRequest)
	k := pos.Void
	return t.Exchange(k, &pos.VoidRequest{Terminal: t.terminal(k, t.nextSTAN(), t.f60(k, readCap(c.EntryMode))), Card: pc, Payment: t.payment(k, c, o.Amount),
		Reference: pos.Reference{RRN: orig.Resp.RRN, AuthCode: orig.Resp.AuthCode, Original: pos.F61{Batch: o.F60().Batch, STAN: o.STAN}.String()}})
}

// Refund 退货 against an original RRN and its date (MMDD).
func (t *Terminal) Refund(c Card, rrn, mmdd string, amount int64) (*Result, error) {
	pc, err := t.card(c)
	if err != nil {
		return nil, err
	}
	k := pos.Refund
	return t.Exchange(k, &pos.RefundRequest{Terminal: t.terminal(k, t.nextSTAN(), t.f60(k, readCap(c.EntryMode))), Card: pc, Payment: t.payment(k, c, amount),
		Reference: pos.Reference{RRN: rrn, Original: pos.F61{Batch: "000000", STAN: "000000", Date: mmdd}.String()}})
}

// Reversal 冲正 of an original request (purchase or void) with reason (98, A0, 96, 06): a copy of
// the original's fields, its STAN and 60.2, without track, PIN, F37 or F59.
func (t *Terminal) Reversal(orig *Result, reason string) (*Result, error) {
	var term pos.Terminal
	var card pos.Card
	var pay pos.Payment
	var ref pos.Reference
	switch o := orig.Sent.(type) {
	case *pos.PurchaseRequest:
		term, card, pay = o.Terminal, o.Card, o.Payment
	case *pos.VoidRequest:
		term, card, pay, ref = o.Terminal, o.Card, o.Payment, o.Reference
	default:
		return nil, fmt.Errorf("reversal: %T is not reversible", orig.Sent)
	}
	k := pos.Reversal
	f60 := term.F60()
	f60.NMI = "000"
	req := &pos.ReversalRequest{Terminal: pos.Terminal{Head: t.head(k), STAN: term.STAN, TID: t.TID, MID: t.MID, Custom: f60.String()},
		PAN: card.PAN, ProcCode: pay.ProcCode, Amount: pay.Amount, Expiry: card.Expiry, EntryMode: pay.EntryMode, CardSeq: card.CardSeq,
		Cond: pay.Cond, AuthCode: orig.Resp.AuthCode, Reason: reason, Currency: pay.Currency, ICC: card.ICC, Original: ref.Original}
	if req.PAN == "" && card.Track2 != "" {
		req.PAN = panOf(card.Track2)
	}
	return t.Exchange(k, req)
}

func panOf(track2 string) string {
	for i, c := range track2 {
		if c == '=' {
			return track2[:i]
		}
	}
	return track2
}

// Status 末笔查询: the last financial transaction, or the one at batch+STAN when given.
func (t *Terminal) Status(batch, stan string) (*Result, error) {
	k := pos.StatusQuery
	req := &pos.StatusQueryRequest{Terminal: t.terminal(k, t.nextSTAN(), t.f60(k, "5")), ProcCode: k.ProcCode, Cond: k.Cond, Device: t.Device()}
	if stan != "" {
		req.Original = pos.F61{Batch: batch, STAN: stan}.String()
	}
	return t.Exchange(k, req)
}

// Settle 批结算 with the terminal's own totals of the current batch.
func (t *Terminal) Settle(tot pos.Totals) (*Result, error) {
	k := pos.Settlement
	s48 := pos.Settlement48{Domestic: tot, Foreign: pos.Totals{Reconcile: '0'}}
	if s48.Domestic.Reconcile == 0 {
		s48.Domestic.Reconcile = '0'
	}
	return t.Exchange(k, &pos.SettlementRequest{Terminal: t.terminal(k, t.nextSTAN(), pos.F60{Type: "00", Batch: t.Batch, NMI: "201"}),
		Totals: s48.String(), Currency: "156", Operator: t.operator()})
}

// Upload 批上送 sends batch detail items; last marks the closing upload (207 balanced).
func (t *Terminal) Upload(items []pos.UploadItem, nmi string) (*Result, error) {
	k := pos.BatchUpload
	return t.Exchange(k, &pos.BatchUploadRequest{Terminal: t.terminal(k, t.nextSTAN(), pos.F60{Type: "00", Batch: t.Batch, NMI: nmi}),
		Detail: pos.EncodeUpload48(items)})
}

// Amount parses "12.34" into fen, exactly: more than two decimals, exponents, zero and
// negative amounts are refused (spec/money).
func Amount(s string) (int64, error) {
	v, err := money.Positive(s)
	if err != nil {
		return 0, fmt.Errorf("amount: %w", err)
	}
	return v, nil
}
