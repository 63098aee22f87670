// Package upstream is the issuer-side dialect: ISO 8583:1987 style, ASCII characters with a binary
// primary and secondary bitmap, modelled on the CUPS interface. F18 (MCC) is mandatory upstream,
// F7/F32/F33/F37/F43 are present (F32 the acquiring institution, F33 the forwarding one, F100
// the receiving institution of the issuer route when the route names one), and reversals are 0420 advices (0421 when repeated) with F90
// original data elements.
//
// Framing (ours): a 4-character ASCII decimal length, then the message.
package upstream

import (
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/field"
	"github.com/shoudan/shoudan/spec"
)

// Fields is the upstream field table.
var Fields = []spec.FieldDef{
	{ID: 2, Name: "PAN", Kind: spec.N, Length: 19, Var: 2, Secrecy: spec.PAN},
	{ID: 3, Name: "Processing code", Kind: spec.N, Length: 6},
	{ID: 4, Name: "Amount", Kind: spec.N, Length: 12, Numeric: true},
	{ID: 7, Name: "Transmission date and time", Kind: spec.N, Length: 10},
	{ID: 11, Name: "System trace", Kind: spec.N, Length: 6},
	{ID: 12, Name: "Local time", Kind: spec.N, Length: 6},
	{ID: 13, Name: "Local date", Kind: spec.N, Length: 4},
	{ID: 14, Name: "Expiry", Kind: spec.N, Length: 4, Secrecy: spec.Hidden},
	{ID: 15, Name: "Settlement date", Kind: spec.N, Length: 4},
	{ID: 18, Name: "MCC", Kind: spec.N, Length: 4},
	{ID: 22, Name: "POS entry mode", Kind: spec.N, Length: 3},
	{ID: 23, Name: "Card sequence number", Kind: spec.N, Length: 3},
	{ID: 25, Name: "Condition code", Kind: spec.N, Length: 2},
	{ID: 26, Name: "PIN max length", Kind: spec.N, Length: 2},
	{ID: 32, Name: "Acquiring institution", Kind: spec.N, Length: 11, Var: 2},
	{ID: 33, Name: "Forwarding institution", Kind: spec.N, Length: 11, Var: 2},
	{ID: 35, Name: "Track 2", Kind: spec.Z, Length: 37, Var: 2, Secrecy: spec.Hidden},
	{ID: 37, Name: "RRN", Kind: spec.AN, Length: 12},
	{ID: 38, Name: "Authorisation code", Kind: spec.AN, Length: 6},
	{ID: 39, Name: "Response code", Kind: spec.AN, Length: 2},
	{ID: 41, Name: "Terminal ID", Kind: spec.ANS, Length: 8},
	{ID: 42, Name: "Merchant ID", Kind: spec.ANS, Length: 15},
	{ID: 43, Name: "Merchant name and location", Kind: spec.ANS, Length: 40},
	{ID: 48, Name: "Additional data (48)", Kind: spec.ANS, Length: 512, Var: 3, Secrecy: spec.Hidden},
	{ID: 49, Name: "Currency", Kind: spec.AN, Length: 3},
	{ID: 52, Name: "PIN block", Kind: spec.B, Length: 8, Secrecy: spec.Hidden},
	{ID: 53, Name: "Security control", Kind: spec.N, Length: 16},
	{ID: 54, Name: "Balance", Kind: spec.AN, Length: 40, Var: 3},
	{ID: 55, Name: "ICC data", Kind: spec.B, Length: 255, Var: 3, Secrecy: spec.Hidden},
	{ID: 60, Name: "Private (60)", Kind: spec.ANS, Length: 100, Var: 3},
	{ID: 70, Name: "Network management code", Kind: spec.N, Length: 3},
	{ID: 90, Name: "Original data elements", Kind: spec.N, Length: 42},
	{ID: 100, Name: "Receiving institution", Kind: spec.N, Length: 11, Var: 2},
}

func init() {
	for i := range Fields {
		Fields[i].Wire = spec.ASCIIWire
	}
	Dialect = spec.NewDialect("shoudan upstream", 4, true,
		field.NewString(&field.Spec{Length: 4, Description: "MTI", Enc: spec.ASCIIDigits, Pref: spec.ASCIIPrefix{}}), Fields)
}

// Dialect is the upstream dialect.
var Dialect *spec.Dialect

// Message is every upstream field, typed.
type Message struct {
	MTI          string `iso8583:"0"`
	PAN          string `iso8583:"2"`
	ProcCode     string `iso8583:"3"`
	Amount       int64  `iso8583:"4"`
	Transmission string `iso8583:"7"`
	Trace        string `iso8583:"11"`
	LocalTime    string `iso8583:"12"`
	LocalDate    string `iso8583:"13"`
	Expiry       string `iso8583:"14"`
	SettleDate   string `iso8583:"15"`
	MCC          string `iso8583:"18"`
	EntryMode    string `iso8583:"22"`
	CardSeq      string `iso8583:"23"`
	Cond         string `iso8583:"25"`
	PINMaxLen    string `iso8583:"26"`
	Acquirer     string `iso8583:"32"`
	Forwarder    string `iso8583:"33"`
	Track2       string `iso8583:"35"`
	RRN          string `iso8583:"37"`
	AuthCode     string `iso8583:"38"`
	RespCode     string `iso8583:"39"`
	TID          string `iso8583:"41"`
	MID          string `iso8583:"42"`
	MerchantName string `iso8583:"43"`
	Additional   string `iso8583:"48"` // a key change's new key (0800, F70 101)
	Currency     string `iso8583:"49"`
	PINBlock     []byte `iso8583:"52"`
	SecCtl       string `iso8583:"53"`
	Balance      string `iso8583:"54"`
	ICC          []byte `iso8583:"55"`
	Private      string `iso8583:"60"`
	NetCode      string `iso8583:"70"` // network management code: 101 = key change
	Original     string `iso8583:"90"`
	Receiving    string `iso8583:"100"` // the issuer route's institution code, when it has one
}

// Processing codes upstream.
const (
	ProcPurchase = "000000"
	ProcVoid     = "200000"
	ProcRefund   = "200000"
	ProcBalance  = "300000"
)

// Private60 is our F60: reason code n4 (4351 = terminal-generated full reversal, 0000 otherwise),
// then the 双免 (no-PIN, no-signature) flag an1.
func Private60(reason string, qps bool) string {
	f := "0"
	if qps {
		f = "1"
	}
	return reason + f
}

// QPS reports the 双免 flag of F60.
func QPS(f60 string) bool { return len(f60) >= 5 && f60[4] == '1' }

// Original90 builds F90: original MTI n4, trace n6, transmission time n10, acquirer n11 and
// forwarder n11 (right-aligned, zero-filled).
func Original90(mti, trace, transmission, acquirer, forwarder string) string {
	return fmt.Sprintf("%4.4s%6.6s%10.10s%011s%011s", mti, trace, transmission, acquirer, forwarder)
}

// OriginalKey is the part of F90 that identifies the original: MTI, trace, time, acquirer.
func OriginalKey(f90 string) string {
	if len(f90) < 31 {
		return f90
	}
	return f90[:31]
}

// Key identifies a request the way F90 will later refer to it.
func Key(m *Message) string {
	return OriginalKey(Original90(m.MTI, m.Trace, m.Transmission, m.Acquirer, ""))
}

// Marshal builds a message from a typed struct.
func Marshal(m *Message) (*iso8583.Message, error) {
	msg := iso8583.NewMessage(Dialect.Spec)
	return msg, spec.Marshal(msg, m)
}

// Unmarshal decodes bytes into a typed struct.
func Unmarshal(b []byte) (*Message, error) {
	msg, _, err := Dialect.Unpack(b)
	if err != nil {
		return nil, err
	}
	var m Message
	return &m, spec.Unmarshal(msg, &m)
}

// ReadLen reads the 4-character ASCII length of a frame.
func ReadLen(r io.Reader) (int, error) {
	var b [4]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(string(b[:]))
	if err != nil || n < 12 || n > 9999 {
		return 0, fmt.Errorf("upstream frame length: expected 4 digits 0012..9999, found %q", b[:])
	}
	return n, nil
}

// NetKeyChange is F70 of a key change (0800): the acquirer sends a new zone PIN key.
const NetKeyChange = "101"

// SecurityControl is F53 of a request with a PIN block: PIN format 2 (ISO 9564 format 0),
// algorithm 6 (double-length 3DES), then the zone PIN key's index n2: 00 is the key agreed out of
// band (entered at both ends by a ceremony), 01-99 the keys sent by key changes since, in turn.
func SecurityControl(zoneIndex int) string { return securityControl[zoneIndex%100] }

// securityControl is F53 for every index (built once: it is on every PIN request's path).
var securityControl = func() (t [100]string) {
	for i := range t {
		t[i] = fmt.Sprintf("26%02d000000000000", i)
	}
	return t
}()

// ZoneIndex is the zone PIN key index of F53 (0 when F53 carries none).
func ZoneIndex(f53 string) int {
	if len(f53) < 4 {
		return 0
	}
	n, err := strconv.Atoi(f53[2:4])
	if err != nil {
		return 0
	}
	return n
}

// KeyChange is F48 of a key change: "ZPK", the new key's index n2, its check value (6 hex
// digits), then the key wrapped under the zone master key (AES key wrap with padding, RFC 5649),
// in hex. The answer (0810) carries F39 and, when 00, F48 with the check value the issuer found.
type KeyChange struct {
	Index   int
	KCV     string
	Wrapped []byte
}

// String is F48 of the key change.
func (k KeyChange) String() string {
	return fmt.Sprintf("ZPK%02d%s%X", k.Index%100, k.KCV, k.Wrapped)
}

// ParseKeyChange reads F48 of a key change.
func ParseKeyChange(f48 string) (KeyChange, error) {
	if len(f48) < 11 || f48[:3] != "ZPK" {
		return KeyChange{}, fmt.Errorf("key change F48: expected ZPK<index n2><kcv 6 hex><wrapped key hex>, found %d characters starting %.3q", len(f48), f48)
	}
	n, err := strconv.Atoi(f48[3:5])
	if err != nil || n < 1 {
		return KeyChange{}, fmt.Errorf("key change F48: expected a key index 01-99, found %q", f48[3:5])
	}
	w, err := hex.DecodeString(f48[11:])
	if err != nil || len(w) < 16 || len(w)%8 != 0 {
		return KeyChange{}, fmt.Errorf("key change F48: expected the wrapped key as hex, a multiple of 8 bytes and at least 16, found %d characters", len(f48)-11)
	}
	return KeyChange{Index: n, KCV: strings.ToUpper(f48[5:11]), Wrapped: w}, nil
}
