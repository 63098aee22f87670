package pos

import (
	"fmt"
	"slices"

	"github.com/moov-io/iso8583"
)

// Kind is a transaction type of protocol.md §3 as data: how to recognise its request, which
// fields it must carry, whether it is MAC-protected and reversible.
type Kind struct {
	Name       string
	Chinese    string
	MTI        string
	RespMTI    string
	ProcCode   string   // F3; empty: not checked
	Cond       string   // F25; empty: not checked
	Type       string   // 60.1; empty: not checked
	NMI        []string // allowed 60.3 values
	MAC        bool
	Reversible bool
	Financial  bool // needs a current sign-on and batch (protocol.md §7 row 3)
	Mandatory  []int
}

// The kinds, in the order of protocol.md §3.
var (
	BalanceInquiry = &Kind{Name: "balance", Chinese: "查询", MTI: "0200", RespMTI: "0210", ProcCode: "310000", Cond: "00", Type: "01", NMI: []string{"000"}, MAC: true, Financial: true,
		Mandatory: []int{3, 11, 22, 25, 41, 42, 49, 59, 60, 64}}
	Purchase = &Kind{Name: "purchase", Chinese: "消费", MTI: "0200", RespMTI: "0210", ProcCode: "000000", Cond: "00", Type: "22", NMI: []string{"000"}, MAC: true, Reversible: true, Financial: true,
		Mandatory: []int{3, 4, 11, 22, 25, 41, 42, 49, 59, 60, 64}}
	Void = &Kind{Name: "void", Chinese: "消费撤销", MTI: "0200", RespMTI: "0210", ProcCode: "200000", Cond: "00", Type: "23", NMI: []string{"000"}, MAC: true, Reversible: true, Financial: true,
		Mandatory: []int{3, 4, 11, 22, 25, 37, 41, 42, 49, 59, 60, 61, 64}}
	Refund = &Kind{Name: "refund", Chinese: "退货", MTI: "0220", RespMTI: "0230", ProcCode: "200000", Cond: "00", Type: "25", NMI: []string{"000"}, MAC: true, Financial: true,
		Mandatory: []int{3, 4, 11, 22, 25, 37, 41, 42, 49, 59, 60, 61, 64}}
	Reversal = &Kind{Name: "reversal", Chinese: "冲正", MTI: "0400", RespMTI: "0410", NMI: []string{"000"}, MAC: true, Financial: true,
		Mandatory: []int{3, 4, 11, 22, 25, 39, 41, 42, 49, 60, 64}}
	StatusQuery = &Kind{Name: "status", Chinese: "末笔查询", MTI: "0200", RespMTI: "0210", ProcCode: "310000", Cond: "88", Type: "01", NMI: []string{"000"}, MAC: true, Financial: true,
		Mandatory: []int{3, 11, 25, 41, 42, 59, 60, 64}}
	SignOn = &Kind{Name: "signon", Chinese: "签到", MTI: "0800", RespMTI: "0810", Type: "00", NMI: []string{"001", "003", "004"},
		Mandatory: []int{11, 41, 42, 60, 63}}
	SignOff = &Kind{Name: "signoff", Chinese: "签退", MTI: "0820", RespMTI: "0830", Type: "00", NMI: []string{"002"},
		Mandatory: []int{11, 41, 42, 60}}
	Echo = &Kind{Name: "echo", Chinese: "回响", MTI: "0820", RespMTI: "0830", Type: "00", NMI: []string{"301"},
		Mandatory: []int{11, 41, 42, 60}}
	Settlement = &Kind{Name: "settlement", Chinese: "批结算", MTI: "0500", RespMTI: "0510", Type: "00", NMI: []string{"201"},
		Mandatory: []int{11, 41, 42, 48, 49, 60, 63}}
	BatchUpload = &Kind{Name: "batchupload", Chinese: "批上送", MTI: "0320", RespMTI: "0330", Type: "00", NMI: []string{"201", "202", "207"},
		Mandatory: []int{11, 41, 42, 48, 60}}
)

// Kinds lists every kind; Identify tries them in this order.
var Kinds = []*Kind{StatusQuery, BalanceInquiry, Purchase, Void, Refund, Reversal, SignOn, SignOff, Echo, Settlement, BatchUpload}

// KindByName finds a kind by its Name.
func KindByName(name string) *Kind {
	for _, k := range Kinds {
		if k.Name == name {
			return k
		}
	}
	return nil
}

// Identify finds the kind of a decoded request and checks its mandatory fields. The error says
// what was expected and found; the switch answers it with 30.
func Identify(f *Frame) (*Kind, error) {
	mti, _ := f.Msg.GetMTI()
	proc, _ := f.Msg.GetString(3)
	cond, _ := f.Msg.GetString(25)
	s60, _ := f.Msg.GetString(60)
	f60, err := ParseF60(s60)
	if err != nil && f.Has(60) {
		return nil, err
	}
	for _, k := range Kinds {
		if k.MTI != mti {
			continue
		}
		if k == Reversal { // a reversal copies its original's 3, 25 and 60.1
			return k, checkMandatory(k, f)
		}
		if (k.ProcCode != "" && k.ProcCode != proc) || (k.Cond != "" && k.Cond != cond) || (k.Type != "" && k.Type != f60.Type) {
			continue
		}
		if !slices.Contains(k.NMI, f60.NMI) {
			continue
		}
		return k, checkMandatory(k, f)
	}
	return nil, fmt.Errorf("unknown transaction: MTI %s, F3 %q, F25 %q, 60.1 %q, 60.3 %q match no row of protocol.md §3", mti, proc, cond, f60.Type, f60.NMI)
}

func checkMandatory(k *Kind, f *Frame) error {
	for _, id := range k.Mandatory {
		if !f.Has(id) {
			return fmt.Errorf("%s request: mandatory field %d (%s) is missing", k.Name, id, Dialect.Def(id).Name)
		}
	}
	return nil
}

// NewMessage returns an empty terminal-dialect message.
func NewMessage() *iso8583.Message { return iso8583.NewMessage(Dialect.Spec) }
