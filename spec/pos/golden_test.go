package pos

import (
	"encoding/hex"
	"reflect"
	"strings"
	"testing"

	"github.com/shoudan/shoudan/spec"
	"github.com/stretchr/testify/require"
)

// hx joins hex fragments (spaces ignored) and, for readability, ASCII fragments written as 'text'.
func hx(t testing.TB, parts ...string) []byte {
	t.Helper()
	var out []byte
	for _, p := range parts {
		for i, seg := range strings.Split(p, "'") {
			if i%2 == 1 { // inside quotes: ASCII
				out = append(out, seg...)
				continue
			}
			b, err := hex.DecodeString(strings.ReplaceAll(seg, " ", ""))
			require.NoError(t, err, p)
			out = append(out, b...)
		}
	}
	return out
}

var (
	reqHead  = Head{TPDU: [5]byte{0x60, 0x00, 0x03, 0x00, 0x00}, Header: [6]byte{0x60, 0x31, 0x00, 0x31, 0x00, 0x00}}
	respHead = Head{TPDU: [5]byte{0x60, 0x00, 0x00, 0x00, 0x03}, Header: [6]byte{0x60, 0x31, 0x00, 0x31, 0x00, 0x00}}
)

func head(h Head, mti string) Head { h.MTI = mti; return h }

const (
	tpduReq  = "60 0003 0000"
	tpduResp = "60 0000 0003"
	hdr      = "60 31 00 31 00 00"
	tid      = "'12345678'"
	mid      = "'898310058120001'"
	device   = "0026 'A2021' '02006SN0001' '050053.2.1'" // F59: A2 { 02 SN0001, 05 3.2.1 }
)

// golden checks both directions: the hand-built bytes decode into want, and want encodes into
// exactly those bytes.
func golden(t *testing.T, frame []byte, want any) {
	t.Helper()
	f, err := Decode(frame)
	require.NoError(t, err)
	got := reflect.New(reflect.TypeOf(want)).Interface()
	require.NoError(t, spec.Unmarshal(f.Msg, got))
	require.Equal(t, want, reflect.ValueOf(got).Elem().Interface())
	// spec.Unmarshal (tags read once per type) gives what the library's own Unmarshal gives
	lib := reflect.New(reflect.TypeOf(want)).Interface()
	require.NoError(t, f.Msg.Unmarshal(lib))
	require.Equal(t, lib, got)

	m, err := Marshal(ptr(want))
	require.NoError(t, err)
	var mac MACFunc
	if f.Has(64) { // the typed structs leave field 64 to Encode; give back the MAC as received
		mac = func([]byte) (v [8]byte, _ error) { copy(v[:], f.MAC()); return v, nil }
	}
	packed, err := Encode(m, mac)
	require.NoError(t, err)
	require.Equal(t, hex.EncodeToString(frame), hex.EncodeToString(packed))
	// and spec.Marshal (behind Marshal) packs what the library's own Marshal packs
	libm := NewMessage()
	require.NoError(t, libm.Marshal(ptr(want)))
	libPacked, err := Encode(libm, mac)
	require.NoError(t, err)
	require.Equal(t, hex.EncodeToString(packed), hex.EncodeToString(libPacked))
}

func ptr(v any) any {
	p := reflect.New(reflect.TypeOf(v))
	p.Elem().Set(reflect.ValueOf(v))
	return p.Interface()
}

func TestGoldenPurchaseChipWithPIN(t *testing.T) {
	frame := hx(t, tpduReq, hdr, "02 00",
		"70 24 06 C0 00 C0 9A 31",  // bitmap: 2 3 4 11 14 22 23 25 26 41 42 49 52 53 55 59 60 64
		"19 6222021234567890123 0", // F2 LL=19, left-aligned, pad nibble 0
		"000000",                   // F3
		"000000012345",             // F4 123.45
		"000123",                   // F11
		"2512",                     // F14
		"0510",                     // F22 051 left-aligned
		"0001",                     // F23 001 right-aligned
		"00", "06",                 // F25, F26
		tid, mid, "'156'", // F41 F42 F49
		"0102030405060708",            // F52
		"2600000000000000",            // F53
		"0011 9F26080102030405060708", // F55 LLL=11 bytes
		device,                        // F59
		"0013 22000001000500",         // F60 22 000001 000 5 0 (13 digits, left-aligned)
		"'1A2B3C4D'")                  // F64
	golden(t, frame, PurchaseRequest{
		Terminal: Terminal{Head: head(reqHead, "0200"), STAN: "000123", TID: "12345678", MID: "898310058120001", Custom: "2200000100050"},
		Card:     Card{PAN: "6222021234567890123", Expiry: "2512", CardSeq: "001", PINMaxLen: "06", PINBlock: hx(t, "0102030405060708"), SecCtl: "2600000000000000", ICC: hx(t, "9F26080102030405060708")},
		Payment:  Payment{ProcCode: "000000", Amount: 12345, EntryMode: "051", Cond: "00", Currency: "156", Device: "A2021" + "02006SN0001" + "050053.2.1"},
	})
}

func TestGoldenPurchaseSwipeTrack2AndMCC(t *testing.T) {
	// 3 4 11 18 22 25 35 41 42 49 59 60: byte0 0x30, byte1 0x20, byte2 18,22 = 0x40|0x04 = 0x44,
	// byte3 25 = 0x80, byte4 35 = 0x20, byte5 0xC0, byte6 49 = 0x80, byte7 59,60 = 0x30
	frame := hx(t, tpduReq, hdr, "02 00",
		"30 20 44 80 20 C0 80 30",
		"000000", "000000100000", "000124", "5812", "0220", "00",
		"37 6222021234567890123D25122010000012345 0",
		tid, mid, "'156'", device,
		"0013 22000001000200")
	golden(t, frame, PurchaseRequest{
		Terminal: Terminal{Head: head(reqHead, "0200"), STAN: "000124", TID: "12345678", MID: "898310058120001", Custom: "2200000100020"},
		Card:     Card{Track2: "6222021234567890123=25122010000012345"},
		Payment:  Payment{ProcCode: "000000", Amount: 100000, MCC: "5812", EntryMode: "022", Cond: "00", Currency: "156", Device: "A2021" + "02006SN0001" + "050053.2.1"},
	})
}

func TestGoldenPurchaseResponse(t *testing.T) {
	// bitmap by hand: bits 2 3 4 | 11 12 13 15 | 25 | 32 | 37 38 39 | 41 42 44 | 49 | 60 63
	// byte0 0x70, byte1 (9..16): 11,12,13,15 = 0x20|0x10|0x08|0x02 = 0x3A, byte2 (17..24) 0x00,
	// byte3 (25..32): 25,32 = 0x80|0x01 = 0x81, byte4 (33..40): 37,38,39 = 0x08|0x04|0x02 = 0x0E,
	// byte5 (41..48): 41,42,44 = 0x80|0x40|0x10 = 0xD0, byte6 (49..56): 49 = 0x80,
	// byte7 (57..64): 60,63 = 0x10|0x02 = 0x12
	frame := hx(t, tpduResp, hdr, "02 10",
		"70 3A 00 81 0E D0 80 12",
		"19 6222021234567890123 0", "000000", "000000012345", "000123",
		"103015", "1121", "1122", "00",
		"08 48020000",
		"'112233445566'", "'A1B2C3'", "'00'", tid, mid,
		"22 '01020000   48020000   '",
		"'156'",
		"0011 220000010000",
		"0003 'CUP'")
	golden(t, frame, FinancialResponse{
		Answer: Answer{Terminal: Terminal{Head: head(respHead, "0210"), STAN: "000123", TID: "12345678", MID: "898310058120001", Custom: "22000001000"},
			LocalTime: "103015", LocalDate: "1121", Acquirer: "48020000", RRN: "112233445566", RespCode: "00"},
		PAN: "6222021234567890123", ProcCode: "000000", Amount: 12345, SettleDate: "1122", Cond: "00", AuthCode: "A1B2C3",
		IDs: "01020000   48020000   ", Currency: "156", Org: "CUP",
	})
}

func TestGoldenVoid(t *testing.T) {
	// 2 3 4 11 22 25 37 38 41 42 49 59 60 61 64
	// byte0 0x70, byte1 11 = 0x20, byte2 22 = 0x04, byte3 25 = 0x80, byte4 37,38 = 0x0C,
	// byte5 41,42 = 0xC0, byte6 49 = 0x80, byte7 59,60,61,64 = 0x20|0x10|0x08|0x01 = 0x39
	frame := hx(t, tpduReq, hdr, "02 00",
		"70 20 04 80 0C C0 80 39",
		"16 6222021234567890", "200000", "000000012345", "000125", "0710", "00",
		"'112233445566'", "'A1B2C3'", tid, mid, "'156'", device,
		"0013 23000001000600",
		"0012 000001000123", // F61: batch 000001, STAN 000123
		"'0A0B0C0D'")
	golden(t, frame, VoidRequest{
		Terminal:  Terminal{Head: head(reqHead, "0200"), STAN: "000125", TID: "12345678", MID: "898310058120001", Custom: "2300000100060"},
		Card:      Card{PAN: "6222021234567890"},
		Payment:   Payment{ProcCode: "200000", Amount: 12345, EntryMode: "071", Cond: "00", Currency: "156", Device: "A2021" + "02006SN0001" + "050053.2.1"},
		Reference: Reference{RRN: "112233445566", AuthCode: "A1B2C3", Original: "000001000123"},
	})
}

func TestGoldenRefund(t *testing.T) {
	// 2 3 4 11 22 25 37 41 42 49 59 60 61 64: byte4 37 = 0x08
	frame := hx(t, tpduReq, hdr, "02 20",
		"70 20 04 80 08 C0 80 39",
		"16 6222021234567890", "200000", "000000005000", "000126", "0510", "00",
		"'112233445566'", tid, mid, "'156'", device,
		"0013 25000001000500",
		"0016 0000000000001121", // F61: 000000 000000 + MMDD 1121
		"'0A0B0C0D'")
	golden(t, frame, RefundRequest{
		Terminal:  Terminal{Head: head(reqHead, "0220"), STAN: "000126", TID: "12345678", MID: "898310058120001", Custom: "2500000100050"},
		Card:      Card{PAN: "6222021234567890"},
		Payment:   Payment{ProcCode: "200000", Amount: 5000, EntryMode: "051", Cond: "00", Currency: "156", Device: "A2021" + "02006SN0001" + "050053.2.1"},
		Reference: Reference{RRN: "112233445566", Original: "0000000000001121"},
	})
}

func TestGoldenReversal(t *testing.T) {
	// 2 3 4 11 14 22 23 25 38 39 41 42 49 55 60 64
	// byte1 11,14 = 0x24; byte2 22,23 = 0x06; byte3 25 = 0x80; byte4 38,39 = 0x06; byte5 0xC0;
	// byte6 49,55 = 0x82; byte7 60,64 = 0x11
	frame := hx(t, tpduReq, hdr, "04 00",
		"70 24 06 80 06 C0 82 11",
		"19 6222021234567890123 0", "000000", "000000012345", "000123", "2512", "0510", "0001", "00",
		"'A1B2C3'", "'98'", tid, mid, "'156'",
		"0011 9F26080102030405060708",
		"0013 22000001000500",
		"'0A0B0C0D'")
	golden(t, frame, ReversalRequest{
		Terminal: Terminal{Head: head(reqHead, "0400"), STAN: "000123", TID: "12345678", MID: "898310058120001", Custom: "2200000100050"},
		PAN:      "6222021234567890123", ProcCode: "000000", Amount: 12345, Expiry: "2512", EntryMode: "051", CardSeq: "001", Cond: "00",
		AuthCode: "A1B2C3", Reason: "98", Currency: "156", ICC: hx(t, "9F26080102030405060708"),
	})
}

func TestGoldenBalanceInquiryAndResponse(t *testing.T) {
	// request: 2 3 11 22 25 41 42 49 52 53 59 60 64
	// byte0 2,3 = 0x60; byte1 11 = 0x20; byte2 22 = 0x04; byte3 25 = 0x80; byte4 0; byte5 0xC0;
	// byte6 49,52,53 = 0x80|0x10|0x08 = 0x98; byte7 59,60,64 = 0x31
	frame := hx(t, tpduReq, hdr, "02 00",
		"60 20 04 80 00 C0 98 31",
		"16 6222021234567890", "310000", "000127", "0510", "00", tid, mid, "'156'",
		"1122334455667788", "2600000000000000", device, "0013 01000001000500", "'0A0B0C0D'")
	golden(t, frame, BalanceInquiryRequest{
		Terminal: Terminal{Head: head(reqHead, "0200"), STAN: "000127", TID: "12345678", MID: "898310058120001", Custom: "0100000100050"},
		Card:     Card{PAN: "6222021234567890", PINBlock: hx(t, "1122334455667788"), SecCtl: "2600000000000000"},
		ProcCode: "310000", EntryMode: "051", Cond: "00", Currency: "156", Device: "A2021" + "02006SN0001" + "050053.2.1",
	})
	// response: 2 3 11 12 13 15 25 32 37 39 41 42 44 49 54 60 63
	// byte0 0x60; byte1 11,12,13,15 = 0x3A; byte2 0; byte3 25,32 = 0x81; byte4 37,39 = 0x0A;
	// byte5 41,42,44 = 0xD0; byte6 49,54 = 0x80|0x04 = 0x84; byte7 60,63 = 0x12
	frame = hx(t, tpduResp, hdr, "02 10",
		"60 3A 00 81 0A D0 84 12",
		"16 6222021234567890", "310000", "000127", "103016", "1121", "1122", "00", "08 48020000",
		"'112233445567'", "'00'", tid, mid, "22 '01020000   48020000   '", "'156'",
		"0020 '1002156C000000999900'", "0011 010000010000", "0003 'CUP'")
	golden(t, frame, FinancialResponse{
		Answer: Answer{Terminal: Terminal{Head: head(respHead, "0210"), STAN: "000127", TID: "12345678", MID: "898310058120001", Custom: "01000001000"},
			LocalTime: "103016", LocalDate: "1121", Acquirer: "48020000", RRN: "112233445567", RespCode: "00"},
		PAN: "6222021234567890", ProcCode: "310000", SettleDate: "1122", Cond: "00", IDs: "01020000   48020000   ",
		Currency: "156", Balance: Balance(999900), Org: "CUP",
	})
}

func TestGoldenStatusQueryAndResponse(t *testing.T) {
	// request: 3 11 25 41 42 59 60 61 64 → byte0 0x20, byte1 0x20, byte2 0, byte3 0x80, byte4 0,
	// byte5 0xC0, byte6 0, byte7 59,60,61,64 = 0x39
	frame := hx(t, tpduReq, hdr, "02 00",
		"20 20 00 80 00 C0 00 39",
		"310000", "000128", "88", tid, mid, device, "0011 010000010000", "0012 000001000123", "'0A0B0C0D'")
	golden(t, frame, StatusQueryRequest{
		Terminal: Terminal{Head: head(reqHead, "0200"), STAN: "000128", TID: "12345678", MID: "898310058120001", Custom: "01000001000"},
		ProcCode: "310000", Cond: "88", Device: "A2021" + "02006SN0001" + "050053.2.1", Original: "000001000123",
	})
	// response (found): 3 4 11 12 13 25 37 38 39 41 42 60 61 62
	// byte0 3,4 = 0x30; byte1 11,12,13 = 0x38; byte2 0; byte3 25 = 0x80; byte4 37,38,39 = 0x0E;
	// byte5 0xC0; byte6 0; byte7 60,61,62 = 0x1C
	rec := StatusRecord{RespCode: "00", MTI: "0200", ProcCode: "000000", Type: "22", EntryMode: "051", State: 'A'}
	frame = hx(t, tpduResp, hdr, "02 10",
		"30 38 00 80 0E C0 00 1C",
		"310000", "000000012345", "000128", "103015", "1121", "88",
		"'112233445566'", "'A1B2C3'", "'00'", tid, mid,
		"0011 010000010000", "0016 0000010001231121",
		"0018 '00020000000022051A'")
	golden(t, frame, FinancialResponse{
		Answer: Answer{Terminal: Terminal{Head: head(respHead, "0210"), STAN: "000128", TID: "12345678", MID: "898310058120001", Custom: "01000001000"},
			LocalTime: "103015", LocalDate: "1121", RRN: "112233445566", RespCode: "00"},
		ProcCode: "310000", Amount: 12345, Cond: "88", AuthCode: "A1B2C3", Original: "0000010001231121", Record: rec.Bytes(),
	})
}

func TestGoldenSignOnAndResponse(t *testing.T) {
	// request: 11 41 42 60 63 → byte1 0x20, byte5 0xC0, byte7 60,63 = 0x12
	frame := hx(t, tpduReq, hdr, "08 00",
		"00 20 00 00 00 C0 00 12",
		"000001", tid, mid, "0011 000000000030", "0003 '01 '")
	golden(t, frame, ManagementRequest{
		Terminal: Terminal{Head: head(reqHead, "0800"), STAN: "000001", TID: "12345678", MID: "898310058120001", Custom: "00000000003"},
		Operator: "01 ",
	})
	// response: 11 12 13 32 37 39 41 42 60 62 → byte1 11,12,13 = 0x38; byte3 32 = 0x01;
	// byte4 37,39 = 0x0A; byte5 0xC0; byte7 60,62 = 0x14
	keys := strings.Repeat("AB", 40)
	frame = hx(t, tpduResp, hdr, "08 10",
		"00 38 00 01 0A C0 00 14",
		"000001", "103015", "1121", "08 48020000", "'112233445568'", "'00'", tid, mid,
		"0011 000000020030", "0040 "+keys)
	golden(t, frame, SignOnResponse{
		Answer: Answer{Terminal: Terminal{Head: head(respHead, "0810"), STAN: "000001", TID: "12345678", MID: "898310058120001", Custom: "00000002003"},
			LocalTime: "103015", LocalDate: "1121", Acquirer: "48020000", RRN: "112233445568", RespCode: "00"},
		Keys: hx(t, keys),
	})
}

func TestGoldenSignOffAndEcho(t *testing.T) {
	for _, nmi := range []string{"0020", "3010"} { // 60.3 002 sign-off, 301 echo (left-aligned, pad 0)
		frame := hx(t, tpduReq, hdr, "08 20", "00 20 00 00 00 C0 00 10",
			"000002", tid, mid, "0011 00000002"+nmi)
		golden(t, frame, ManagementRequest{
			Terminal: Terminal{Head: head(reqHead, "0820"), STAN: "000002", TID: "12345678", MID: "898310058120001", Custom: "00000002" + nmi[:3]},
		})
		frame = hx(t, tpduResp, hdr, "08 30", "00 38 00 01 0A C0 00 10",
			"000002", "103015", "1121", "08 48020000", "'112233445569'", "'00'", tid, mid, "0011 00000002"+nmi)
		golden(t, frame, ManagementResponse{Answer: Answer{
			Terminal:  Terminal{Head: head(respHead, "0830"), STAN: "000002", TID: "12345678", MID: "898310058120001", Custom: "00000002" + nmi[:3]},
			LocalTime: "103015", LocalDate: "1121", Acquirer: "48020000", RRN: "112233445569", RespCode: "00"}})
	}
}

func TestGoldenSettlementAndBatchUpload(t *testing.T) {
	totals := Settlement48{Domestic: Totals{DebitAmount: 12345, DebitCount: 1, CreditAmount: 5000, CreditCount: 1, Reconcile: '0'}, Foreign: Totals{Reconcile: '0'}}
	require.Equal(t, "00000001234500100000000500000100000000000000000000000000000000", totals.String())
	// 0500: 11 41 42 48 49 60 63 → byte1 0x20, byte5 41,42,48 = 0xC1, byte6 49 = 0x80, byte7 0x12
	frame := hx(t, tpduReq, hdr, "05 00", "00 20 00 00 00 C1 80 12",
		"000010", tid, mid, "0062 "+totals.String(), "'156'", "0011 000000022010", "0003 '01 '")
	golden(t, frame, SettlementRequest{
		Terminal: Terminal{Head: head(reqHead, "0500"), STAN: "000010", TID: "12345678", MID: "898310058120001", Custom: "00000002201"},
		Totals:   totals.String(), Currency: "156", Operator: "01 ",
	})
	// 0510: 11 12 13 32 37 39 41 42 48 49 60 → byte1 0x38, byte3 0x01, byte4 0x0A, byte5 0xC1, byte6 0x80, byte7 0x10
	ans := totals
	ans.Domestic.Reconcile, ans.Foreign.Reconcile = '1', '1'
	frame = hx(t, tpduResp, hdr, "05 10", "00 38 00 01 0A C1 80 10",
		"000010", "103015", "1121", "08 48020000", "'112233445570'", "'00'", tid, mid, "0062 "+ans.String(), "'156'", "0011 000000022010")
	golden(t, frame, SettlementResponse{
		Answer: Answer{Terminal: Terminal{Head: head(respHead, "0510"), STAN: "000010", TID: "12345678", MID: "898310058120001", Custom: "00000002201"},
			LocalTime: "103015", LocalDate: "1121", Acquirer: "48020000", RRN: "112233445570", RespCode: "00"},
		Totals: ans.String(), Currency: "156",
	})
	// 0320 detail: 11 41 42 48 60 → byte1 0x20, byte5 0xC1, byte7 0x10; 48 = 01 + one n40 item (42 digits)
	item := UploadItem{CardClass: "00", STAN: "000123", PAN: "6222021234567890123", Amount: 12345}
	d := EncodeUpload48([]UploadItem{item})
	require.Equal(t, "01"+"00"+"000123"+"06222021234567890123"+"000000012345", d)
	frame = hx(t, tpduReq, hdr, "03 20", "00 20 00 00 00 C1 00 10",
		"000011", tid, mid, "0042 "+d, "0011 000000022010")
	golden(t, frame, BatchUploadRequest{
		Terminal: Terminal{Head: head(reqHead, "0320"), STAN: "000011", TID: "12345678", MID: "898310058120001", Custom: "00000002201"},
		Detail:   d,
	})
	items, err := ParseUpload48(d)
	require.NoError(t, err)
	require.Equal(t, []UploadItem{item}, items)
	// last upload: 60.3 207, 48 = n4 total count
	frame = hx(t, tpduReq, hdr, "03 20", "00 20 00 00 00 C1 00 10",
		"000012", tid, mid, "0004 0001", "0011 000000022070")
	golden(t, frame, BatchUploadRequest{
		Terminal: Terminal{Head: head(reqHead, "0320"), STAN: "000012", TID: "12345678", MID: "898310058120001", Custom: "00000002207"},
		Detail:   "0001",
	})
	frame = hx(t, tpduResp, hdr, "03 30", "00 38 00 01 0A C1 00 10",
		"000012", "103015", "1121", "08 48020000", "'112233445571'", "'00'", tid, mid, "0004 0001", "0011 000000022070")
	golden(t, frame, BatchUploadResponse{
		Answer: Answer{Terminal: Terminal{Head: head(respHead, "0330"), STAN: "000012", TID: "12345678", MID: "898310058120001", Custom: "00000002207"},
			LocalTime: "103015", LocalDate: "1121", Acquirer: "48020000", RRN: "112233445571", RespCode: "00"},
		Detail: "0001",
	})
}
