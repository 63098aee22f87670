package pos

import (
	"testing"
)

func purchaseFrame(b testing.TB) []byte {
	return seedFrames(b)["purchase-chip-pin.hex"]
}

func purchaseResponse() *FinancialResponse {
	return &FinancialResponse{
		Answer: Answer{Terminal: Terminal{Head: head(respHead, "0210"), STAN: "000123", TID: "12345678", MID: "898310058120001", Custom: "2200000100050"},
			LocalTime: "103015", LocalDate: "1121", Acquirer: "48020000", RRN: "112233445566", RespCode: "00"},
		PAN: "6222021234567890123", ProcCode: "000000", Amount: 12345, SettleDate: "1122", Cond: "00", AuthCode: "A1B2C3",
		IDs: "01020000   48020000   ", Currency: "156", Org: "CUP",
	}
}

func BenchmarkUnpackPurchase(b *testing.B) {
	raw := purchaseFrame(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPackPurchaseResponse(b *testing.B) {
	m, err := Marshal(purchaseResponse())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(m, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnpackPurchaseResponse(b *testing.B) {
	m, _ := Marshal(purchaseResponse())
	raw, _ := Encode(m, nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPackPurchaseRequest(b *testing.B) {
	f, _ := Decode(purchaseFrame(b))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(f.Msg, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRoundTrip is the switch's codec work per request: unpack and unmarshal the request,
// marshal and pack the response.
func BenchmarkRoundTrip(b *testing.B) {
	raw := purchaseFrame(b)
	resp := purchaseResponse()
	b.ReportAllocs()
	for b.Loop() {
		f, err := Decode(raw)
		if err != nil {
			b.Fatal(err)
		}
		var req Request
		if err := f.Msg.Unmarshal(&req); err != nil {
			b.Fatal(err)
		}
		m, err := Marshal(resp)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Encode(m, nil); err != nil {
			b.Fatal(err)
		}
	}
}
