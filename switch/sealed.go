package posswitch

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/shoudan/shoudan/spec/upstream"
	"github.com/shoudan/shoudan/switch/journal"
)

// SealedReversal is the prepared reversal as journaled (sealed): the 0420 and the route of its
// original, which store-and-forward must use (only that issuer can reverse it).
type SealedReversal struct {
	upstream.Message
	Route string `json:"route,omitempty"`
}

// The sealed forms of a prepared reversal, by their first byte (the oldest, JSON, starts '{'):
//
//   - sealedPacked (0x01): the route's length (one byte), the route, the whole 0420 packed as
//     ISO 8583.
//   - sealedCompact (0x02, issue 13): the route, then only the fields the transaction's row does
//     not hold (the card number, expiry, the terminal's date and time, acquirer codes …), each
//     a length (uvarint) and its bytes in compactFields order; the rest (amount, traces, RRN,
//     terminal, merchant, F90) is rebuilt from the row when the reversal is sent. About 100
//     bytes instead of 260 in every reversible row's write-ahead record.
//   - sealedContext (0x03): the id (uvarint) of a reversal_context row holding what every
//     reversal of the merchant through the route repeats (the route and contextFields, in the
//     0x02 encoding), then the transaction's own fields (cardFields), each a digit string packed
//     two to a byte (packDigits). About 30 bytes before sealing instead of 100.
const (
	sealedPacked  = 0x01
	sealedCompact = 0x02
	sealedContext = 0x03
)

// compactFields are the 0420's fields the compact form stores, in order. A reversal with
// anything else set, or whose row-held fields differ from the row, is sealed packed.
var compactFields = []func(m *upstream.Message) *string{
	func(m *upstream.Message) *string { return &m.PAN },
	func(m *upstream.Message) *string { return &m.LocalTime },
	func(m *upstream.Message) *string { return &m.LocalDate },
	func(m *upstream.Message) *string { return &m.Expiry },
	func(m *upstream.Message) *string { return &m.SettleDate },
	func(m *upstream.Message) *string { return &m.CardSeq },
	func(m *upstream.Message) *string { return &m.Cond },
	func(m *upstream.Message) *string { return &m.Acquirer },
	func(m *upstream.Message) *string { return &m.Forwarder },
	func(m *upstream.Message) *string { return &m.Currency },
	func(m *upstream.Message) *string { return &m.Private },
	func(m *upstream.Message) *string { return &m.Receiving },
	func(m *upstream.Message) *string { return &m.AuthCode },
	func(m *upstream.Message) *string { return &m.MerchantName }, // blanks on the right trimmed
}

// cardFields are the compactFields (by index) that are the transaction's own: the card
// number, the terminal's time and date, expiry, settlement date, card sequence, F25 and F38;
// contextFields (with the route) are the rest, the same for every reversal of a merchant
// through a route (acquirer, forwarder, currency, F60, receiving institution, merchant name).
var (
	cardFields    = []int{0, 1, 2, 3, 4, 5, 6, 12}
	contextFields = []int{7, 8, 9, 10, 11, 13}
)

func (s *Switch) sealReversal(ctx context.Context, m *upstream.Message, route string, row journal.ReversalRow) []byte {
	if len(route) > 255 {
		s.Log.Error("reversal route too long to seal", "route", route)
		return nil
	}
	// the context form when its context is at hand (it checks that it gives back m); the compact
	// one when not (the journal unreachable for the one statement a new context costs), checked
	// only then: one rebuild per reversal on the write path, not two
	plain := compactReversal(m, route)
	if small, ok := s.contextReversal(ctx, plain, row, m); ok {
		return s.Journal.Vault.Seal(small)
	}
	if back, err := rebuildCompact(plain[2+len(route):], row); err == nil && reflect.DeepEqual(back, m) {
		return s.Journal.Vault.Seal(plain)
	}
	msg, err := upstream.Marshal(m)
	var b []byte
	if err == nil {
		b, err = msg.Pack()
	}
	if err != nil {
		s.Log.Error("reversal does not pack", "err", err, "route", route)
		return nil
	}
	packed := make([]byte, 0, 2+len(route)+len(b))
	packed = append(append(append(packed, sealedPacked, byte(len(route))), route...), b...)
	return s.Journal.Vault.Seal(packed)
}

// compactReversal is m in the compact form; whether it gives back m with its row is for the
// caller to check (rebuildCompact).
func compactReversal(m *upstream.Message, route string) []byte {
	plain := make([]byte, 0, 128)
	plain = append(append(plain, sealedCompact, byte(len(route))), route...)
	c := *m
	c.MerchantName = strings.TrimRight(c.MerchantName, " ")
	for _, f := range compactFields {
		v := *f(&c)
		plain = binary.AppendUvarint(plain, uint64(len(v)))
		plain = append(plain, v...)
	}
	return plain
}

// contextReversal is the compact form plain in the context form: its route and contextFields
// as a reversal_context row, its cardFields packed; false when that does not give back m.
func (s *Switch) contextReversal(ctx context.Context, plain []byte, row journal.ReversalRow, m *upstream.Message) ([]byte, bool) {
	vals, err := compactValues(plain[2+int(plain[1]):])
	if err != nil {
		return nil, false
	}
	fields := append([]byte(nil), plain[1:2+int(plain[1])]...) // the route's length and the route
	for _, i := range contextFields {
		fields = binary.AppendUvarint(fields, uint64(len(vals[i])))
		fields = append(fields, vals[i]...)
	}
	id, err := s.Journal.ReversalContextID(ctx, fields)
	if err != nil {
		return nil, false
	}
	out := binary.AppendUvarint([]byte{sealedContext}, uint64(id))
	for _, i := range cardFields {
		if out, err = packDigits(out, vals[i]); err != nil {
			return nil, false
		}
	}
	back, route, err := openContext(ctx, s.Journal, out[1:], row)
	if err != nil || route != string(plain[2:2+int(plain[1])]) || !reflect.DeepEqual(back, m) {
		return nil, false
	}
	return out, true
}

// openContext rebuilds the 0420 of the context form (after its first byte) and its route.
func openContext(ctx context.Context, j *journal.Journal, b []byte, row journal.ReversalRow) (*upstream.Message, string, error) {
	id, k := binary.Uvarint(b)
	if k <= 0 || id > 1<<31-1 {
		return nil, "", errors.New("sealed reversal: expected a reversal context id, found none")
	}
	fields, err := j.ReversalContext(ctx, int32(id))
	if err != nil {
		return nil, "", err
	}
	if len(fields) < 1 || len(fields) < 1+int(fields[0]) {
		return nil, "", fmt.Errorf("sealed reversal: reversal context %d is cut short", id)
	}
	route := string(fields[1 : 1+int(fields[0])])
	ctxVals, err := uvarintFields(fields[1+int(fields[0]):], len(contextFields))
	if err != nil {
		return nil, "", fmt.Errorf("reversal context %d: %w", id, err)
	}
	b = b[k:]
	vals := make([]string, len(compactFields))
	for n, i := range cardFields {
		if vals[i], b, err = unpackDigits(b); err != nil {
			return nil, "", fmt.Errorf("sealed reversal: field %d of %d: %w", n+1, len(cardFields), err)
		}
	}
	if len(b) != 0 {
		return nil, "", fmt.Errorf("sealed reversal: expected %d fields, found %d bytes more", len(cardFields), len(b))
	}
	for n, i := range contextFields {
		vals[i] = ctxVals[n]
	}
	m, err := buildCompact(vals, row)
	return m, route, err
}

// packDigits appends v: a byte with its length, then, when it is all digits, two digits to a
// byte (the last one alone in the high nibble), else its bytes as they are (the length byte's
// high bit set).
func packDigits(out []byte, v string) ([]byte, error) {
	if len(v) > 127 {
		return nil, fmt.Errorf("expected at most 127 bytes, found %d", len(v))
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return append(append(out, 0x80|byte(len(v))), v...), nil
		}
	}
	out = append(out, byte(len(v)))
	for i := 0; i < len(v); i += 2 {
		c := (v[i] - '0') << 4
		if i+1 < len(v) {
			c |= v[i+1] - '0'
		}
		out = append(out, c)
	}
	return out, nil
}

func unpackDigits(b []byte) (string, []byte, error) {
	if len(b) == 0 {
		return "", nil, errors.New("expected a length byte, found the end")
	}
	n, raw := int(b[0]&0x7f), b[0]&0x80 != 0
	b = b[1:]
	size := n
	if !raw {
		size = (n + 1) / 2
	}
	if len(b) < size {
		return "", nil, fmt.Errorf("expected %d bytes, found %d", size, len(b))
	}
	if raw {
		return string(b[:n]), b[n:], nil
	}
	d := make([]byte, n)
	for i := range d {
		c := b[i/2] >> 4
		if i%2 == 1 {
			c = b[i/2] & 0x0f
		}
		if c > 9 {
			return "", nil, fmt.Errorf("expected a digit, found nibble %#x", c)
		}
		d[i] = '0' + c
	}
	return string(d), b[size:], nil
}

// uvarintFields splits n fields, each a length (uvarint) and its bytes, the whole of b.
func uvarintFields(b []byte, n int) ([]string, error) {
	vals := make([]string, 0, n)
	for i := range n {
		l, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < l {
			return nil, fmt.Errorf("sealed reversal: field %d of %d cut short", i+1, n)
		}
		vals = append(vals, string(b[k:k+int(l)]))
		b = b[k+int(l):]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("sealed reversal: expected %d fields, found %d bytes more", n, len(b))
	}
	return vals, nil
}

func compactValues(b []byte) ([]string, error) { return uvarintFields(b, len(compactFields)) }

func rebuildCompact(b []byte, row journal.ReversalRow) (*upstream.Message, error) {
	vals, err := compactValues(b)
	if err != nil {
		return nil, err
	}
	return buildCompact(vals, row)
}

// buildCompact is the 0420 of the compactFields' values and the row.
func buildCompact(vals []string, row journal.ReversalRow) (*upstream.Message, error) {
	m := &upstream.Message{MTI: "0420", ProcCode: row.ProcCode, Amount: row.Amount, Transmission: row.UpTime, Trace: row.UpTrace,
		RRN: row.RRN, TID: row.TID, MID: row.MID, MCC: row.MCC, EntryMode: row.EntryMode, RespCode: "98"}
	for i, f := range compactFields {
		*f(m) = vals[i]
	}
	m.MerchantName = fmt.Sprintf("%-40.40s", m.MerchantName)
	m.Original = upstream.Original90(row.MTI, row.UpTrace, row.UpTime, m.Acquirer, m.Forwarder)
	return m, nil
}

// openReversal reads a sealed reversal: the compact form (with its transaction's row), the
// packed form, or JSON as journaled before issue 13.
func openReversal(ctx context.Context, j *journal.Journal, sealed []byte, row journal.ReversalRow) (*SealedReversal, error) {
	plain, err := j.Vault.Open(sealed)
	if err != nil {
		return nil, err
	}
	var r SealedReversal
	if len(plain) > 0 && plain[0] == '{' {
		return &r, json.Unmarshal(plain, &r)
	}
	if len(plain) > 0 && plain[0] == sealedContext {
		if row.RRN == "" {
			return nil, errors.New("sealed reversal: the context form needs its transaction's row, which is gone")
		}
		m, route, err := openContext(ctx, j, plain[1:], row)
		if err != nil {
			return nil, err
		}
		r.Message, r.Route = *m, route
		return &r, nil
	}
	if len(plain) < 2 || (plain[0] != sealedPacked && plain[0] != sealedCompact) || len(plain) < 2+int(plain[1]) {
		return nil, fmt.Errorf("sealed reversal: expected the context (0x03), compact (0x02) or packed form (0x01) or JSON, found %d bytes starting %#x", len(plain), plain[:min(1, len(plain))])
	}
	n := int(plain[1])
	r.Route = string(plain[2 : 2+n])
	var m *upstream.Message
	if plain[0] == sealedCompact {
		if row.RRN == "" {
			return nil, errors.New("sealed reversal: the compact form needs its transaction's row, which is gone")
		}
		m, err = rebuildCompact(plain[2+n:], row)
	} else {
		m, err = upstream.Unmarshal(plain[2+n:])
	}
	if err != nil {
		return nil, err
	}
	r.Message = *m
	return &r, nil
}
