package settlement

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ClearingRecord is one line of an issuer's clearing file (format: issuerlink/sim/clearing.go
// and docs/settlement.md).
type ClearingRecord struct {
	RRN, Trace, Transmission, MID, TID, Kind string
	Amount                                   int64
	AuthCode                                 string
}

// ClearingFile is a parsed clearing file.
type ClearingFile struct {
	Issuer  string
	Date    time.Time
	Records []ClearingRecord
}

// ParseClearing reads a clearing file: H|issuer|YYYYMMDD|generated, D|… lines, T|count|debit|credit.
// The trailer must match the detail lines, or the file is refused (a truncated file is not
// reconciled as if the issuer had approved less).
func ParseClearing(r io.Reader) (*ClearingFile, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	f := &ClearingFile{}
	n, sawTrailer := 0, false
	var debit, credit int64
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			continue
		}
		p := strings.Split(line, "|")
		bad := func(why string) error { return fmt.Errorf("clearing file line %d: %s, found %q", n, why, line) }
		switch {
		case p[0] == "H" && len(p) >= 3 && n == 1:
			d, err := time.Parse("20060102", p[2])
			if err != nil {
				return nil, bad("expected the settlement date YYYYMMDD in the header")
			}
			f.Issuer, f.Date = p[1], d
		case n == 1:
			return nil, bad("expected a header H|issuer|YYYYMMDD|generated")
		case p[0] == "D" && len(p) == 11:
			amt, err := strconv.ParseInt(p[7], 10, 64)
			if err != nil || amt < 0 {
				return nil, bad("expected the amount in fen in field 8")
			}
			rec := ClearingRecord{RRN: p[1], Trace: p[2], Transmission: p[3], MID: p[4], TID: p[5], Kind: p[6], Amount: amt, AuthCode: p[8]}
			switch rec.Kind {
			case "purchase":
				debit += amt
			case "void", "refund":
				credit += amt
			default:
				return nil, bad("expected kind purchase, void or refund in field 7")
			}
			f.Records = append(f.Records, rec)
		case p[0] == "T" && len(p) == 4:
			cnt, e1 := strconv.Atoi(p[1])
			db, e2 := strconv.ParseInt(p[2], 10, 64)
			cr, e3 := strconv.ParseInt(p[3], 10, 64)
			if e1 != nil || e2 != nil || e3 != nil || cnt != len(f.Records) || db != debit || cr != credit {
				return nil, bad(fmt.Sprintf("trailer does not match the file (%d records, debit %d, credit %d)", len(f.Records), debit, credit))
			}
			sawTrailer = true
		default:
			return nil, bad("expected a detail line D|rrn|trace|transmission|mid|tid|kind|amount|auth|pan|at or the trailer")
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !sawTrailer {
		return nil, fmt.Errorf("clearing file: no trailer line T|count|debit|credit (truncated?)")
	}
	return f, nil
}

// Difference kinds.
const (
	IssuerOnly    = "issuer_only"    // the issuer approved it; the journal has no standing approval for the date
	JournalOnly   = "journal_only"   // the journal has it approved; the issuer's file does not
	AmountDiffers = "amount_differs" // both have it, with different amounts (or kinds)
)

// Difference is one reconciliation difference (差错), with what identifies the transaction.
type Difference struct {
	Kind               string
	RRN, STAN, UpTrace string
	MID, TID, TxnKind  string
	JournalAmount      *int64
	IssuerAmount       *int64
	Note               string
}

// Reconciliation is the result of matching a date's journal against the issuer's file.
type Reconciliation struct {
	Date            time.Time
	Journal, Issuer int // transactions on each side
	Matched         int
	Differences     []Difference
}

// Reconcile matches the journal's standing approvals of settlement date d against the issuer's
// clearing file, by RRN, and records the differences (recon_diff, replacing an earlier run's).
func (s *Settler) Reconcile(ctx context.Context, d time.Time, file *ClearingFile) (*Reconciliation, error) {
	d = dateOnly(d)
	if !file.Date.Equal(d) {
		return nil, fmt.Errorf("the clearing file is for %s, not %s", file.Date.Format("2006-01-02"), d.Format("2006-01-02"))
	}
	mine, err := s.Config.approvedUpstream(ctx, s.DB, d)
	if err != nil {
		return nil, err
	}
	r := &Reconciliation{Date: d, Journal: len(mine), Issuer: len(file.Records)}
	byRRNj := map[string]*IssuerItem{}
	for i := range mine {
		byRRNj[mine[i].RRN] = &mine[i]
	}
	seen := map[string]bool{}
	for _, rec := range file.Records {
		amt := rec.Amount
		j := byRRNj[rec.RRN]
		if j == nil {
			df := Difference{Kind: IssuerOnly, RRN: rec.RRN, UpTrace: rec.Trace, MID: rec.MID, TID: rec.TID, TxnKind: rec.Kind, IssuerAmount: &amt}
			if it, sd, state, err := byRRN(ctx, s.DB, rec.RRN); err != nil {
				return nil, err
			} else if it == nil {
				df.Note = "not in the journal at all"
			} else {
				df.STAN = it.STAN
				df.Note = fmt.Sprintf("journal has it on settlement date %s in state %s", sd.Format("2006-01-02"), state)
			}
			r.Differences = append(r.Differences, df)
			continue
		}
		seen[rec.RRN] = true
		ja := j.Amount
		if j.Amount != rec.Amount || j.Kind != rec.Kind {
			df := Difference{Kind: AmountDiffers, RRN: rec.RRN, STAN: j.STAN, UpTrace: rec.Trace, MID: j.MID, TID: j.TID, TxnKind: j.Kind, JournalAmount: &ja, IssuerAmount: &amt}
			if j.Kind != rec.Kind {
				df.Note = fmt.Sprintf("journal kind %s, issuer kind %s", j.Kind, rec.Kind)
			}
			r.Differences = append(r.Differences, df)
			continue
		}
		r.Matched++
	}
	for _, j := range mine {
		if !seen[j.RRN] {
			ja := j.Amount
			r.Differences = append(r.Differences, Difference{Kind: JournalOnly, RRN: j.RRN, STAN: j.STAN, UpTrace: j.UpTrace, MID: j.MID, TID: j.TID, TxnKind: j.Kind, JournalAmount: &ja,
				Note: "approved in the journal, absent from the issuer's file"})
		}
	}
	sort.SliceStable(r.Differences, func(a, b int) bool {
		if r.Differences[a].Kind != r.Differences[b].Kind {
			return r.Differences[a].Kind < r.Differences[b].Kind
		}
		return r.Differences[a].RRN < r.Differences[b].RRN
	})
	err = pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM recon_diff WHERE settle_date = $1", d); err != nil {
			return err
		}
		for _, df := range r.Differences {
			if _, err := tx.Exec(ctx, `INSERT INTO recon_diff (settle_date, kind, rrn, stan, up_trace, mid, tid, txn_kind, journal_amount, issuer_amount)
				VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)`, d, df.Kind, df.RRN, df.STAN, df.UpTrace, df.MID, df.TID, df.TxnKind, df.JournalAmount, df.IssuerAmount); err != nil {
				return err
			}
		}
		return nil
	})
	return r, err
}
