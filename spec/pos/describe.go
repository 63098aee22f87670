package pos

import (
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/shoudan/shoudan/spec"
	"github.com/shoudan/shoudan/spec/money"
)

// Row is one line of a masked description: a field or sub-field and its shown value.
type Row struct {
	Key   string // "2", "60.1", ...
	Name  string
	Value string
}

// Describe lists every field of a decoded frame, masked for logs and tools: PAN first 6 + last 4;
// tracks, PIN block, expiry, ICC data and keys never shown.
func Describe(f *Frame) []Row {
	h := f.Head()
	rows := []Row{
		{"tpdu", "TPDU", hex.EncodeToString(h.TPDU[:])},
		{"header", "Header", h.HeaderDigits()},
		{"mti", "MTI", h.MTI},
	}
	fields := f.Msg.GetFields()
	ids := make([]int, 0, len(fields))
	for id := range fields {
		if id > 1 {
			ids = append(ids, id)
		}
	}
	sort.Ints(ids)
	for _, id := range ids {
		def := Dialect.Def(id)
		v := shown(h.MTI, def, fields[id].(interface{ String() (string, error) }))
		if id == 4 {
			raw, _ := fields[id].Pack()
			rows = append(rows, Row{"4", def.Name, amountShown(string(raw), v)})
			continue
		}
		rows = append(rows, Row{strconv.Itoa(id), def.Name, v})
		switch id {
		case 48:
			if h.MTI == "0500" || h.MTI == "0510" {
				if st, err := ParseSettlement48(v); err == nil {
					rows = append(rows, totalsRows("48.1", "domestic", st.Domestic)...)
					rows = append(rows, totalsRows("48.2", "foreign", st.Foreign)...)
				}
			}
		case 54:
			if len(v) == 20 {
				amt, err := strconv.ParseInt(v[8:], 10, 64)
				if err == nil {
					if v[7] == 'D' {
						amt = -amt
					}
					rows = append(rows, Row{"54", "balance", fmt.Sprintf("%s yuan (account type %s, amount type %s, currency %s)", money.Format(amt), v[:2], v[2:4], v[4:7])})
				}
			}
		case 59:
			if tlvs, err := ParseTLVs(v); err == nil {
				for _, t := range tlvs {
					name := f59Names[t.Tag]
					if name == "" {
						name = "Tag " + t.Tag
					}
					rows = append(rows, Row{"59." + t.Tag, name, t.Value})
					if t.Tag == "A2" {
						if subs, err := ParseTLVs(t.Value); err == nil {
							for _, sub := range subs {
								rows = append(rows, Row{"59.A2." + sub.Tag, a2Names[sub.Tag], sub.Value})
							}
						}
					}
				}
			}
		case 60:
			if p, err := ParseF60(v); err == nil {
				for i, s := range []string{p.Type, p.Batch, p.NMI, p.ReadCap, p.ICCond, p.F606, p.F607} {
					if s != "" {
						rows = append(rows, Row{fmt.Sprintf("60.%d", i+1), f60Names[i], s})
					}
				}
			}
		case 61:
			if p, err := ParseF61(v); err == nil {
				for i, s := range []string{p.Batch, p.STAN, p.Date, p.Rest} {
					if s != "" {
						rows = append(rows, Row{fmt.Sprintf("61.%d", i+1), f61Names[i], s})
					}
				}
			}
		}
	}
	return rows
}

// amountShown is F4 as on the wire (12 digits of fen) and in yuan.
func amountShown(wire, v string) string {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return v
	}
	if len(wire) != 12 {
		wire = fmt.Sprintf("%012d", n)
	}
	return fmt.Sprintf("%s (%s yuan)", wire, money.Format(n))
}

func totalsRows(key, what string, t Totals) []Row {
	rec := map[byte]string{'0': "not reconciled (request)", '1': "balanced", '2': "not balanced", '3': "error"}[t.Reconcile]
	if rec == "" {
		rec = string(t.Reconcile)
	}
	return []Row{{key, what + " totals", fmt.Sprintf("debits %d for %s yuan, credits %d for %s yuan: %s", t.DebitCount, money.Format(t.DebitAmount),
		t.CreditCount, money.Format(t.CreditAmount), rec)}}
}

var (
	f59Names = map[string]string{"A2": "Device information"}
	a2Names  = map[string]string{"01": "Device type", "02": "Hardware serial number", "03": "Random factor", "04": "SN check value (MAC)", "05": "Application / SDK version"}
	f60Names = []string{"Transaction type", "Batch", "Network management code", "Read capability", "IC condition", "60.6", "60.7"}
	f61Names = []string{"Original batch", "Original STAN", "Original date", "61.4+"}
)

func shown(mti string, def *spec.FieldDef, fv interface{ String() (string, error) }) string {
	s, _ := fv.String()
	switch {
	case def.ID == 62 && mti == "0210": // status-query record: not secret
		b, _ := hex.DecodeString(s)
		return string(b)
	case def.ID == 48 && (mti == "0320" || mti == "0330"):
		return maskUpload(s)
	case def.ID == 35 || def.ID == 36:
		return spec.MaskTrack(s)
	case def.Secrecy == spec.PAN:
		return spec.MaskPAN(s)
	case def.Secrecy == spec.Hidden:
		n := len(s)
		if def.Kind == spec.B {
			n /= 2
		}
		return fmt.Sprintf("[hidden, %d %s]", n, unit(def))
	case def.ID == 64:
		b, _ := hex.DecodeString(s)
		if _, ok := printable(b); ok {
			return string(b)
		}
	}
	return s
}

func unit(def *spec.FieldDef) string {
	if def.Kind == spec.N || def.Kind == spec.Z {
		return "digits"
	}
	return "bytes"
}

func printable(b []byte) (int, bool) {
	for i, c := range b {
		if c < 0x20 || c > 0x7E {
			return i, false
		}
	}
	return 0, true
}

// maskUpload masks the PANs inside a batch-upload field 48.
func maskUpload(s string) string {
	items, err := ParseUpload48(s)
	if err != nil {
		return fmt.Sprintf("[hidden, %d digits]", len(s))
	}
	var b strings.Builder
	b.WriteString(s[:2])
	for _, it := range items {
		fmt.Fprintf(&b, " %s/%s/%s/%d", it.CardClass, it.STAN, spec.MaskPAN(it.PAN), it.Amount)
	}
	return b.String()
}

// WriteTable prints rows as an aligned table.
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Key, r.Name, r.Value)
	}
	return tw.Flush()
}

// JSONFrame is the --json shape of one decoded frame.
type JSONFrame struct {
	TPDU   string            `json:"tpdu"`
	Header string            `json:"header"`
	MTI    string            `json:"mti"`
	Fields map[string]string `json:"fields"`
}

// ToJSON turns rows into the JSON shape.
func ToJSON(rows []Row) JSONFrame {
	j := JSONFrame{Fields: map[string]string{}}
	for _, r := range rows {
		switch r.Key {
		case "tpdu":
			j.TPDU = r.Value
		case "header":
			j.Header = r.Value
		case "mti":
			j.MTI = r.Value
		default:
			j.Fields[r.Key] = r.Value
		}
	}
	return j
}
