package pos

import (
	"fmt"
	"strconv"
	"strings"
)

// F60 is field 60 (protocol.md §4): 60.1 n2 type · 60.2 n6 batch · 60.3 n3 network-management
// code · 60.4 n1 read capability · 60.5 n1 IC condition · 60.6 n1 · 60.7 n3.
type F60 struct {
	Type, Batch, NMI, ReadCap, ICCond, F606, F607 string
}

var f60Widths = []int{2, 6, 3, 1, 1, 1, 3}

// ParseF60 splits field 60; the value may stop after any complete sub-field from 60.1 on.
func ParseF60(s string) (F60, error) {
	parts, err := split("60", s, f60Widths, 1)
	if err != nil {
		return F60{}, err
	}
	return F60{parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], parts[6]}, nil
}

func (f F60) String() string {
	return join(f.Type, f.Batch, f.NMI, f.ReadCap, f.ICCond, f.F606, f.F607)
}

// F61 is field 61: original batch, original STAN, original date MMDD (61.4 and 61.5 kept whole).
type F61 struct {
	Batch, STAN, Date, Rest string
}

// ParseF61 splits field 61; batch and STAN are required, the date optional.
func ParseF61(s string) (F61, error) {
	parts, err := split("61", s, []int{6, 6, 4}, 2)
	if err != nil && len(s) <= 16 {
		return F61{}, err
	}
	if len(s) > 16 {
		return F61{s[:6], s[6:12], s[12:16], s[16:]}, nil
	}
	return F61{parts[0], parts[1], parts[2], ""}, nil
}

func (f F61) String() string { return join(f.Batch, f.STAN, f.Date) + f.Rest }

// split cuts s at the given widths; at least min sub-fields must be present and s must end on a
// sub-field boundary.
func split(field, s string, widths []int, min int) ([]string, error) {
	out := make([]string, len(widths))
	off := 0
	for i, w := range widths {
		if off == len(s) {
			if i < min {
				return nil, fmt.Errorf("field %s: expected at least %d sub-fields, found %d", field, min, i)
			}
			return out, nil
		}
		if off+w > len(s) {
			return nil, fmt.Errorf("field %s.%d at digit %d: expected %d digits, found %d", field, i+1, off, w, len(s)-off)
		}
		out[i] = s[off : off+w]
		off += w
	}
	if off != len(s) {
		return nil, fmt.Errorf("field %s: expected at most %d digits, found %d", field, off, len(s))
	}
	return out, nil
}

// join concatenates sub-fields up to the first empty one.
func join(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		if p == "" {
			break
		}
		b.WriteString(p)
	}
	return b.String()
}

// TLV is one element of field 59: tag an2, length n3 (ASCII), value.
type TLV struct {
	Tag   string
	Value string
}

// ParseTLVs reads a run of field-59 style TLVs.
func ParseTLVs(s string) ([]TLV, error) {
	var out []TLV
	for off := 0; off < len(s); {
		if off+5 > len(s) {
			return nil, fmt.Errorf("TLV at offset %d: expected tag an2 and length n3, found %d bytes", off, len(s)-off)
		}
		tag := s[off : off+2]
		n, err := strconv.Atoi(s[off+2 : off+5])
		if err != nil || n < 0 || strings.ContainsAny(s[off+2:off+5], "+- ") {
			return nil, fmt.Errorf("TLV %s at offset %d: expected a 3-digit length, found %q", tag, off+2, s[off+2:off+5])
		}
		if off+5+n > len(s) {
			return nil, fmt.Errorf("TLV %s at offset %d: expected %d value bytes, found %d", tag, off, n, len(s)-off-5)
		}
		out = append(out, TLV{tag, s[off+5 : off+5+n]})
		off += 5 + n
	}
	return out, nil
}

// EncodeTLVs writes TLVs in order.
func EncodeTLVs(tlvs ...TLV) string {
	var b strings.Builder
	for _, t := range tlvs {
		fmt.Fprintf(&b, "%-2.2s%03d%s", t.Tag, len(t.Value), t.Value)
	}
	return b.String()
}

// Device is the device information of field 59 tag A2 (protocol.md §5).
type Device struct {
	Type       string // 01
	Serial     string // 02
	Random     string // 03
	CheckValue string // 04
	Version    string // 05
}

// ErrNoDevice is returned by ParseDevice when field 59 has no A2 tag.
var ErrNoDevice = fmt.Errorf("field 59: no device information (tag A2)")

// ParseDevice finds tag A2 in field 59 and splits its sub-TLVs.
func ParseDevice(f59 string) (Device, error) {
	tlvs, err := ParseTLVs(f59)
	if err != nil {
		return Device{}, fmt.Errorf("field 59: %w", err)
	}
	for _, t := range tlvs {
		if t.Tag != "A2" {
			continue
		}
		subs, err := ParseTLVs(t.Value)
		if err != nil {
			return Device{}, fmt.Errorf("field 59 tag A2: %w", err)
		}
		var d Device
		for _, s := range subs {
			switch s.Tag {
			case "01":
				d.Type = s.Value
			case "02":
				d.Serial = s.Value
			case "03":
				d.Random = s.Value
			case "04":
				d.CheckValue = s.Value
			case "05":
				d.Version = s.Value
			}
		}
		return d, nil
	}
	return Device{}, ErrNoDevice
}

// F59 encodes the device information as field 59 (tag A2 with its present sub-tags).
func (d Device) F59() string {
	var subs []TLV
	for _, t := range []TLV{{"01", d.Type}, {"02", d.Serial}, {"03", d.Random}, {"04", d.CheckValue}, {"05", d.Version}} {
		if t.Value != "" {
			subs = append(subs, t)
		}
	}
	return EncodeTLVs(TLV{"A2", EncodeTLVs(subs...)})
}

// Totals is one 31-digit block of field 48 in a settlement (0500/0510).
type Totals struct {
	DebitAmount  int64
	DebitCount   int
	CreditAmount int64
	CreditCount  int
	Reconcile    byte // '0' request, '1' balanced, '2' not balanced, '3' error
}

// Settlement48 is field 48 of 0500/0510: domestic then foreign totals.
type Settlement48 struct{ Domestic, Foreign Totals }

func ParseSettlement48(s string) (Settlement48, error) {
	if len(s) != 62 {
		return Settlement48{}, fmt.Errorf("field 48 (settlement): expected 62 digits, found %d", len(s))
	}
	d, err := parseTotals(s[:31])
	if err != nil {
		return Settlement48{}, err
	}
	f, err := parseTotals(s[31:])
	return Settlement48{d, f}, err
}

func parseTotals(s string) (Totals, error) {
	var v [4]int64
	for i, w := range [...][2]int{{0, 12}, {12, 3}, {15, 12}, {27, 3}} {
		n, err := strconv.ParseUint(s[w[0]:w[0]+w[1]], 10, 63)
		if err != nil {
			return Totals{}, fmt.Errorf("field 48 totals at digit %d: expected %d digits, found %q", w[0], w[1], s[w[0]:w[0]+w[1]])
		}
		v[i] = int64(n)
	}
	return Totals{v[0], int(v[1]), v[2], int(v[3]), s[30]}, nil
}

func (t Totals) String() string {
	r := t.Reconcile
	if r == 0 {
		r = '0'
	}
	return fmt.Sprintf("%012d%03d%012d%03d%c", t.DebitAmount, t.DebitCount, t.CreditAmount, t.CreditCount, r)
}

func (s Settlement48) String() string { return s.Domestic.String() + s.Foreign.String() }

// UploadItem is one transaction in a batch upload (0320, 60.3 201).
type UploadItem struct {
	CardClass string // 00 domestic, 01 foreign
	STAN      string
	PAN       string
	Amount    int64
}

// ParseUpload48 reads field 48 of a 0320 with 60.3 201: n2 count then count × n40.
func ParseUpload48(s string) ([]UploadItem, error) {
	if len(s) < 2 {
		return nil, fmt.Errorf("field 48 (batch upload): expected a 2-digit count, found %d digits", len(s))
	}
	n, err := strconv.Atoi(s[:2])
	if err != nil || n > 8 {
		return nil, fmt.Errorf("field 48 (batch upload): expected a count 00..08, found %q", s[:2])
	}
	if len(s) != 2+40*n {
		return nil, fmt.Errorf("field 48 (batch upload): expected %d digits for %d items, found %d", 2+40*n, n, len(s))
	}
	items := make([]UploadItem, n)
	for i := range items {
		r := s[2+40*i : 2+40*(i+1)]
		amt, err := strconv.ParseInt(r[28:], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("field 48 item %d: expected a 12-digit amount, found %q", i+1, r[28:])
		}
		items[i] = UploadItem{CardClass: r[:2], STAN: r[2:8], PAN: strings.TrimLeft(r[8:28], "0"), Amount: amt}
	}
	return items, nil
}

// EncodeUpload48 writes field 48 of a 0320 detail upload (at most 8 items).
func EncodeUpload48(items []UploadItem) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%02d", len(items))
	for _, it := range items {
		fmt.Fprintf(&b, "%2.2s%6.6s%020s%012d", it.CardClass, it.STAN, it.PAN, it.Amount)
	}
	return b.String()
}

// StatusRecord is field 62 of a status-query response (protocol.md §3): 18 ASCII bytes.
type StatusRecord struct {
	RespCode  string // an2
	MTI       string // n4
	ProcCode  string // n6
	Type      string // 60.1 n2
	EntryMode string // F22 n3
	State     byte   // A approved, D declined, V voided, R reversed, P pending
}

func (r StatusRecord) Bytes() []byte {
	return []byte(fmt.Sprintf("%-2.2s%4.4s%6.6s%2.2s%3.3s%c", r.RespCode, r.MTI, r.ProcCode, r.Type, r.EntryMode, r.State))
}

func ParseStatusRecord(b []byte) (StatusRecord, error) {
	if len(b) != 18 {
		return StatusRecord{}, fmt.Errorf("field 62 (status record): expected 18 bytes, found %d", len(b))
	}
	s := string(b)
	return StatusRecord{s[:2], s[2:6], s[6:12], s[12:14], s[14:17], s[17]}, nil
}

// F63 is field 63: 63.1 an3 (operator code in requests, card organisation in responses) and the
// text to print.
type F63 struct{ Code, Text string }

func ParseF63(s string) F63 {
	if len(s) <= 3 {
		return F63{Code: s}
	}
	return F63{s[:3], s[3:]}
}

func (f F63) String() string { return fmt.Sprintf("%-3.3s%s", f.Code, f.Text) }

// Balance is field 54 of a balance-inquiry response: account type n2, amount type n2, currency
// an3, sign C/D, amount n12.
func Balance(amount int64) string {
	sign := 'C'
	if amount < 0 {
		sign, amount = 'D', -amount
	}
	return fmt.Sprintf("1002156%c%012d", sign, amount)
}
