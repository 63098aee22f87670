package posswitch

import (
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
const (
	sealedPacked  = 0x01
	sealedCompact = 0x02
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

func (s *Switch) sealReversal(m *upstream.Message, route string, row journal.ReversalRow) []byte {
	if len(route) > 255 {
		s.Log.Error("reversal route too long to seal", "route", route)
		return nil
	}
	if plain, ok := compactReversal(m, route, row); ok {
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
	plain := make([]byte, 0, 2+len(route)+len(b))
	plain = append(append(append(plain, sealedPacked, byte(len(route))), route...), b...)
	return s.Journal.Vault.Seal(plain)
}

// compactReversal is m in the compact form, when rebuilding it from those bytes and row gives
// back exactly m.
func compactReversal(m *upstream.Message, route string, row journal.ReversalRow) ([]byte, bool) {
	plain := make([]byte, 0, 128)
	plain = append(append(plain, sealedCompact, byte(len(route))), route...)
	c := *m
	c.MerchantName = strings.TrimRight(c.MerchantName, " ")
	for _, f := range compactFields {
		v := *f(&c)
		plain = binary.AppendUvarint(plain, uint64(len(v)))
		plain = append(plain, v...)
	}
	back, err := rebuildCompact(plain[2+len(route):], row)
	if err != nil || !reflect.DeepEqual(back, m) {
		return nil, false
	}
	return plain, true
}

func rebuildCompact(b []byte, row journal.ReversalRow) (*upstream.Message, error) {
	m := &upstream.Message{MTI: "0420", ProcCode: row.ProcCode, Amount: row.Amount, Transmission: row.UpTime, Trace: row.UpTrace,
		RRN: row.RRN, TID: row.TID, MID: row.MID, MCC: row.MCC, EntryMode: row.EntryMode, RespCode: "98"}
	for i, f := range compactFields {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return nil, fmt.Errorf("sealed reversal: field %d of %d cut short", i+1, len(compactFields))
		}
		*f(m) = string(b[k : k+int(n)])
		b = b[k+int(n):]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("sealed reversal: expected %d fields, found %d bytes more", len(compactFields), len(b))
	}
	m.MerchantName = fmt.Sprintf("%-40.40s", m.MerchantName)
	m.Original = upstream.Original90(row.MTI, row.UpTrace, row.UpTime, m.Acquirer, m.Forwarder)
	return m, nil
}

// openReversal reads a sealed reversal: the compact form (with its transaction's row), the
// packed form, or JSON as journaled before issue 13.
func openReversal(v *journal.Vault, sealed []byte, row journal.ReversalRow) (*SealedReversal, error) {
	plain, err := v.Open(sealed)
	if err != nil {
		return nil, err
	}
	var r SealedReversal
	if len(plain) > 0 && plain[0] == '{' {
		return &r, json.Unmarshal(plain, &r)
	}
	if len(plain) < 2 || (plain[0] != sealedPacked && plain[0] != sealedCompact) || len(plain) < 2+int(plain[1]) {
		return nil, fmt.Errorf("sealed reversal: expected the compact (0x02) or packed form (0x01) or JSON, found %d bytes starting %#x", len(plain), plain[:min(1, len(plain))])
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
