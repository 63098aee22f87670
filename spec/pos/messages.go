package pos

import (
	"github.com/moov-io/iso8583"
	"github.com/shoudan/shoudan/spec"
)

// The typed messages. Building blocks first; each transaction's request and response composes
// exactly the fields protocol.md §3 gives it. Marshal/Unmarshal go through moov-io/iso8583.

// Terminal identifies the sender and the message: head, STAN, TID, MID and field 60.
type Terminal struct {
	Head   Head   `iso8583:"0"`
	STAN   string `iso8583:"11"`
	TID    string `iso8583:"41"`
	MID    string `iso8583:"42"`
	Custom string `iso8583:"60"`
}

// Card is what the terminal read from the card and the cardholder.
type Card struct {
	PAN       string `iso8583:"2"`
	Expiry    string `iso8583:"14"`
	CardSeq   string `iso8583:"23"`
	PINMaxLen string `iso8583:"26"`
	Track2    string `iso8583:"35"`
	Track3    string `iso8583:"36"`
	PINBlock  []byte `iso8583:"52"`
	SecCtl    string `iso8583:"53"`
	ICC       []byte `iso8583:"55"`
}

// Payment is the common body of a financial request.
type Payment struct {
	ProcCode  string `iso8583:"3"`
	Amount    int64  `iso8583:"4"`
	MCC       string `iso8583:"18"`
	EntryMode string `iso8583:"22"`
	Cond      string `iso8583:"25"`
	Currency  string `iso8583:"49"`
	Device    string `iso8583:"59"`
}

// Reference points at an original transaction.
type Reference struct {
	RRN      string `iso8583:"37"`
	AuthCode string `iso8583:"38"`
	Original string `iso8583:"61"`
}

// Requests.

type PurchaseRequest struct {
	Terminal
	Card
	Payment
}

type BalanceInquiryRequest struct {
	Terminal
	Card
	ProcCode  string `iso8583:"3"`
	EntryMode string `iso8583:"22"`
	Cond      string `iso8583:"25"`
	Currency  string `iso8583:"49"`
	Device    string `iso8583:"59"`
}

type VoidRequest struct {
	Terminal
	Card
	Payment
	Reference
}

type RefundRequest struct {
	Terminal
	Card
	Payment
	Reference
}

// ReversalRequest copies its original (no track, PIN, F37 or F59) and carries the reason in F39.
type ReversalRequest struct {
	Terminal
	PAN       string `iso8583:"2"`
	ProcCode  string `iso8583:"3"`
	Amount    int64  `iso8583:"4"`
	Expiry    string `iso8583:"14"`
	EntryMode string `iso8583:"22"`
	CardSeq   string `iso8583:"23"`
	Cond      string `iso8583:"25"`
	AuthCode  string `iso8583:"38"`
	Reason    string `iso8583:"39"`
	Currency  string `iso8583:"49"`
	ICC       []byte `iso8583:"55"`
	Original  string `iso8583:"61"`
}

type StatusQueryRequest struct {
	Terminal
	ProcCode string `iso8583:"3"`
	Cond     string `iso8583:"25"`
	Device   string `iso8583:"59"`
	Original string `iso8583:"61"`
}

// ManagementRequest is sign-on (with operator code in 63), sign-off and echo.
type ManagementRequest struct {
	Terminal
	Operator string `iso8583:"63"`
}

type SettlementRequest struct {
	Terminal
	Totals   string `iso8583:"48"`
	Currency string `iso8583:"49"`
	Operator string `iso8583:"63"`
}

type BatchUploadRequest struct {
	Terminal
	Detail string `iso8583:"48"`
}

// Request is every field a terminal request may carry: the switch reads any request through it.
type Request struct {
	Terminal
	Card
	Payment
	Reference
	Reason   string `iso8583:"39"` // reversal reason
	Detail   string `iso8583:"48"`
	Operator string `iso8583:"63"`
}

// Responses.

// Answer is the common part of every response.
type Answer struct {
	Terminal
	LocalTime string `iso8583:"12"`
	LocalDate string `iso8583:"13"`
	Acquirer  string `iso8583:"32"`
	RRN       string `iso8583:"37"`
	RespCode  string `iso8583:"39"`
}

// FinancialResponse answers purchase, void, refund, reversal, balance inquiry and status query.
type FinancialResponse struct {
	Answer
	PAN        string `iso8583:"2"`
	ProcCode   string `iso8583:"3"`
	Amount     int64  `iso8583:"4"`
	SettleDate string `iso8583:"15"`
	Cond       string `iso8583:"25"`
	AuthCode   string `iso8583:"38"`
	IDs        string `iso8583:"44"`
	Currency   string `iso8583:"49"`
	Balance    string `iso8583:"54"`
	Original   string `iso8583:"61"`
	Record     []byte `iso8583:"62"` // status-query record
	Org        string `iso8583:"63"`
}

type SignOnResponse struct {
	Answer
	Keys []byte `iso8583:"62"`
}

type ManagementResponse struct {
	Answer
}

type SettlementResponse struct {
	Answer
	Totals   string `iso8583:"48"`
	Currency string `iso8583:"49"`
}

type BatchUploadResponse struct {
	Answer
	Detail string `iso8583:"48"`
}

// Marshal builds a terminal-dialect message from a typed struct.
func Marshal(v any) (*iso8583.Message, error) {
	m := NewMessage()
	if err := spec.Marshal(m, v); err != nil {
		return nil, err
	}
	return m, nil
}

// F60 parses field 60 of a decoded Terminal block (zero value when absent or malformed).
func (t Terminal) F60() F60 {
	f, _ := ParseF60(t.Custom)
	return f
}
