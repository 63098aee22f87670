package responsecodes

import "testing"

func TestTableIsCompleteAndUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Table {
		if seen[c.Code] || len(c.Code) != 2 || c.Chinese == "" || c.English == "" || c.Action == 0 {
			t.Fatalf("bad or repeated row %+v", c)
		}
		seen[c.Code] = true
	}
	// every code the switch produces is in the table
	for _, code := range []string{Approved, InvalidMerchant, InvalidTxn, InvalidAmount, InvalidCard, NoOriginal, FormatError,
		NotPermittedToTerm, AmountLimit, OriginalAmount, SignOnAgain, IssuerDown, Violation, Duplicate, ReconcileError,
		SystemMalfunction, UnknownTerminal, IssuerTimeout, MACFailed, IncorrectPIN} {
		if _, ok := Lookup(code); !ok {
			t.Fatalf("code %s missing from the table", code)
		}
	}
	if Describe("ZZ").English != "unknown response code" {
		t.Fatal("unknown codes must say so")
	}
}
