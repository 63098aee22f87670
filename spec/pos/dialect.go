// Package pos is the terminal dialect of shoudan: China UnionPay style POS messages exactly as
// shared/protocol.md §1–§6 define them, on github.com/moov-io/iso8583.
//
// A frame is LEN(2) + TPDU(5) + header(6) + MTI(2, BCD) + bitmap(8) + fields. LEN is handled by
// ReadFrame/WriteFrame; everything after it is what Decode takes and Encode returns.
package pos

import (
	"github.com/shoudan/shoudan/spec"
)

const (
	// MinFrame and MaxFrame bound LEN (protocol.md §1).
	MinFrame = 21
	MaxFrame = 2048
	// headSize is TPDU + header + MTI.
	headSize = 13
)

// Fields is the terminal dialect's field table, protocol.md §2, as data.
var Fields = []spec.FieldDef{
	{ID: 2, Name: "PAN", Kind: spec.N, Length: 19, Var: 2, Align: spec.Left, Secrecy: spec.PAN},
	{ID: 3, Name: "Processing code", Kind: spec.N, Length: 6},
	{ID: 4, Name: "Amount", Kind: spec.N, Length: 12, Numeric: true},
	{ID: 11, Name: "STAN", Kind: spec.N, Length: 6},
	{ID: 12, Name: "Local time", Kind: spec.N, Length: 6},
	{ID: 13, Name: "Local date", Kind: spec.N, Length: 4},
	{ID: 14, Name: "Expiry", Kind: spec.N, Length: 4, Secrecy: spec.Hidden},
	{ID: 15, Name: "Settlement date", Kind: spec.N, Length: 4},
	{ID: 18, Name: "MCC", Kind: spec.N, Length: 4},
	{ID: 22, Name: "POS entry mode", Kind: spec.N, Length: 3, Align: spec.Left},
	{ID: 23, Name: "Card sequence number", Kind: spec.N, Length: 3, Align: spec.Right},
	{ID: 25, Name: "Condition code", Kind: spec.N, Length: 2},
	{ID: 26, Name: "PIN max length", Kind: spec.N, Length: 2},
	{ID: 32, Name: "Acquiring institution", Kind: spec.N, Length: 11, Var: 2, Align: spec.Left},
	{ID: 35, Name: "Track 2", Kind: spec.Z, Length: 37, Var: 2, Align: spec.Left, Secrecy: spec.Hidden},
	{ID: 36, Name: "Track 3", Kind: spec.Z, Length: 104, Var: 3, Align: spec.Left, Secrecy: spec.Hidden},
	{ID: 37, Name: "RRN", Kind: spec.AN, Length: 12},
	{ID: 38, Name: "Authorisation code", Kind: spec.AN, Length: 6},
	{ID: 39, Name: "Response code", Kind: spec.AN, Length: 2},
	{ID: 41, Name: "Terminal ID", Kind: spec.ANS, Length: 8},
	{ID: 42, Name: "Merchant ID", Kind: spec.ANS, Length: 15},
	{ID: 44, Name: "Issuer and acquirer ids", Kind: spec.AN, Length: 25, Var: 2},
	{ID: 48, Name: "Settlement totals / batch detail", Kind: spec.N, Length: 322, Var: 3, Align: spec.Left},
	{ID: 49, Name: "Currency", Kind: spec.AN, Length: 3},
	{ID: 52, Name: "PIN block", Kind: spec.B, Length: 8, Secrecy: spec.Hidden},
	{ID: 53, Name: "Security control", Kind: spec.N, Length: 16},
	{ID: 54, Name: "Balance", Kind: spec.AN, Length: 20, Var: 3},
	{ID: 55, Name: "ICC data", Kind: spec.B, Length: 255, Var: 3, Secrecy: spec.Hidden},
	{ID: 59, Name: "Device information", Kind: spec.ANS, Length: 600, Var: 3},
	{ID: 60, Name: "Custom (60)", Kind: spec.N, Length: 17, Var: 3, Align: spec.Left},
	{ID: 61, Name: "Original transaction", Kind: spec.N, Length: 29, Var: 3, Align: spec.Left},
	{ID: 62, Name: "Keys / status record", Kind: spec.B, Length: 512, Var: 3, Secrecy: spec.Hidden},
	{ID: 63, Name: "Operator / card organisation", Kind: spec.ANS, Length: 163, Var: 3},
	{ID: 64, Name: "MAC", Kind: spec.B, Length: 8},
}

// Dialect is the terminal dialect: fields after a 13-byte head, one primary bitmap only.
var Dialect = spec.NewDialect("shoudan CUP POS", headSize, false, NewHeadField(), Fields)
