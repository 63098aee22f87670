package settlement_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/spec"
	"github.com/shoudan/shoudan/spec/pos"
	"github.com/shoudan/shoudan/switch/app"
	"github.com/shoudan/shoudan/switch/settlement"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals/device"
)

const goodPAN = "6222021234567890123"

// TestReconcileWithIssuer: real switch, real simulated issuer, real terminal. The issuer's
// clearing file of the day matches the journal (zero differences); then the journal loses one
// approval, one amount is made to differ and one line is dropped from the file: each is
// reported by kind, with RRN (and STAN where the journal has it).
func TestReconcileWithIssuer(t *testing.T) {
	ctx := context.Background()
	s := switchtest.Start(t, switchtest.Options{})
	d := s.SignedOn("10000001")
	card := device.Chip(goodPAN, "2912", "123456")
	var res []*device.Result
	for i := 0; i < 6; i++ {
		r, err := d.Purchase(card, int64(1000+i*111))
		if err != nil || r.Code() != rc.Approved {
			t.Fatalf("purchase %d: %v %v", i, err, r)
		}
		res = append(res, r)
	}
	if r, err := d.Void(card, res[1]); err != nil || r.Code() != rc.Approved {
		t.Fatalf("void: %v %v", err, r)
	}
	if r, err := d.Reversal(res[2], "98"); err != nil || r.Code() != rc.Approved {
		t.Fatalf("reversal: %v %v", err, r)
	}
	// the reversal goes upstream through store-and-forward: let it arrive first
	for deadline := time.Now().Add(10 * time.Second); ; {
		n, _, err := s.Journal.SAFStats(ctx)
		if err == nil && n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reversal not delivered to the issuer: depth %d, %v", n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	conf := s.Config.Settlement
	day := conf.Cutoff.Date(time.Now())
	if f15 := res[0].Resp.SettleDate; f15 != day.Format("0102") {
		t.Errorf("F15 %s, want the settlement date under the cut-off %s", f15, day.Format("0102"))
	}
	d0 := time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, time.UTC)
	clearing := func(drop string) *settlement.ClearingFile {
		var buf bytes.Buffer
		if err := s.Sim.Issuer.Ledger.WriteClearing(&buf, d0.Format("20060102"), app.SimCutoff(conf), time.Now()); err != nil {
			t.Fatal(err)
		}
		text := buf.String()
		if drop != "" {
			var keep []string
			var n, sum int
			for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
				switch {
				case strings.HasPrefix(l, "D|"+drop+"|"):
					continue
				case strings.HasPrefix(l, "T|"):
					continue
				case strings.HasPrefix(l, "D|"):
					n++
					var amt int
					fmt.Sscan(strings.Split(l, "|")[7], &amt)
					if strings.Split(l, "|")[6] == "purchase" {
						sum += amt
					}
				}
				keep = append(keep, l)
			}
			var credit int
			for _, l := range keep {
				if f := strings.Split(l, "|"); f[0] == "D" && f[6] != "purchase" {
					var a int
					fmt.Sscan(f[7], &a)
					credit += a
				}
			}
			text = strings.Join(keep, "\n") + fmt.Sprintf("\nT|%d|%d|%d\n", n, sum, credit)
		}
		f, err := settlement.ParseClearing(strings.NewReader(text))
		if err != nil {
			t.Fatalf("%v\n%s", err, text)
		}
		return f
	}
	st := s.Settler
	r, err := st.Reconcile(ctx, d0, clearing(""))
	if err != nil {
		t.Fatal(err)
	}
	// 6 purchases (one voided, listed with its void), 1 void; the reversed one on neither side
	if len(r.Differences) != 0 || r.Matched != 6 || r.Journal != 6 {
		t.Fatalf("clean day: %d matched of journal %d / issuer %d, differences %+v", r.Matched, r.Journal, r.Issuer, r.Differences)
	}

	lost, changed, unknown := res[3].Resp.RRN, res[4].Resp.RRN, res[5].Resp.RRN
	pool := s.Journal.Pool
	if _, err := pool.Exec(ctx, "DELETE FROM txn_request WHERE rrn = $1", lost); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "UPDATE txn_request SET amount = amount + 1 WHERE rrn = $1", changed); err != nil {
		t.Fatal(err)
	}
	r, err = st.Reconcile(ctx, d0, clearing(unknown))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]settlement.Difference{}
	for _, df := range r.Differences {
		got[df.Kind] = df
	}
	if len(r.Differences) != 3 {
		t.Fatalf("want 3 differences, got %+v", r.Differences)
	}
	if df := got[settlement.IssuerOnly]; df.RRN != lost || df.IssuerAmount == nil || *df.IssuerAmount != 1333 || df.UpTrace == "" {
		t.Errorf("issuer approved %s, the journal lost it: %+v", lost, df)
	}
	if df := got[settlement.AmountDiffers]; df.RRN != changed || df.STAN != res[4].Resp.STAN || *df.JournalAmount != 1445 || *df.IssuerAmount != 1444 {
		t.Errorf("amount differs on %s: %+v", changed, df)
	}
	if df := got[settlement.JournalOnly]; df.RRN != unknown || df.STAN != res[5].Resp.STAN {
		t.Errorf("journal only %s: %+v", unknown, df)
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM recon_diff WHERE settle_date = $1", d0).Scan(&n); err != nil || n != 3 {
		t.Errorf("recon_diff rows %d (%v), want 3", n, err)
	}
	// a truncated file is refused, not reconciled as if the issuer had approved less
	var buf bytes.Buffer
	_ = s.Sim.Issuer.Ledger.WriteClearing(&buf, d0.Format("20060102"), app.SimCutoff(conf), time.Now())
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if _, err := settlement.ParseClearing(strings.NewReader(strings.Join(lines[:len(lines)-2], "\n"))); err == nil {
		t.Error("a clearing file without its trailer was accepted")
	}
}

// TestBatchUploadReconciled: 0320 items are matched against the journal by terminal, batch and
// STAN; a wrong amount, an unknown STAN and another card are recorded in batch_mismatch.
func TestBatchUploadReconciled(t *testing.T) {
	ctx := context.Background()
	s := switchtest.Start(t, switchtest.Options{})
	d := s.SignedOn("10000001")
	card := device.Chip(goodPAN, "2912", "123456")
	var rs []*device.Result
	for i := 0; i < 3; i++ {
		r, err := d.Purchase(card, 5000+int64(i))
		if err != nil || r.Code() != rc.Approved {
			t.Fatalf("purchase: %v %v", err, r)
		}
		rs = append(rs, r)
	}
	items := []pos.UploadItem{
		{CardClass: "00", STAN: rs[0].Resp.STAN, PAN: goodPAN, Amount: 5000},               // matches
		{CardClass: "00", STAN: rs[1].Resp.STAN, PAN: goodPAN, Amount: 9999},               // amount differs
		{CardClass: "00", STAN: "999999", PAN: goodPAN, Amount: 100},                       // not in the journal
		{CardClass: "00", STAN: rs[2].Resp.STAN, PAN: "6222021234567890131", Amount: 5002}, // another card
	}
	for range 2 { // a repeated upload records nothing twice
		r, err := d.Upload(items, "201")
		if err != nil || r.Code() != rc.Approved {
			t.Fatalf("upload: %v %v", err, r)
		}
	}
	rows, err := s.Journal.Pool.Query(ctx, "SELECT stan, kind, uploaded_amount, coalesce(journal_amount, -1), pan_masked FROM batch_mismatch ORDER BY stan")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var stan, kind, pan string
		var up, j int64
		_ = rows.Scan(&stan, &kind, &up, &j, &pan)
		got = append(got, fmt.Sprintf("%s %s %d %d %s", stan, kind, up, j, pan))
	}
	rows.Close()
	want := []string{
		rs[1].Resp.STAN + " amount 9999 5001 " + spec.MaskPAN(goodPAN),
		rs[2].Resp.STAN + " card 5002 5002 " + spec.MaskPAN("6222021234567890131"),
		"999999 missing 100 -1 " + spec.MaskPAN(goodPAN),
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("batch mismatches:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestCutoffMovesF15: a purchase one second before the cut-off belongs to today's settlement
// date, one a second after it to tomorrow's: F15 of the answer and txn.settle_date agree.
func TestCutoffMovesF15(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{})
	loc := s.Config.Settlement.Cutoff.Loc
	y, m, dd := time.Now().In(loc).Date()
	card := device.Chip(goodPAN, "2912", "123456")
	for _, c := range []struct {
		at   time.Time
		want string
	}{
		{time.Date(y, m, dd, 22, 59, 59, 0, loc), time.Date(y, m, dd, 0, 0, 0, 0, loc).Format("0102")},
		{time.Date(y, m, dd, 23, 0, 1, 0, loc), time.Date(y, m, dd+1, 0, 0, 0, 0, loc).Format("0102")},
	} {
		at := c.at
		s.Switch.Now = func() time.Time { return at }
		d := s.SignedOn("10000001")
		r, err := d.Purchase(card, 1200)
		if err != nil || r.Code() != rc.Approved {
			t.Fatalf("purchase: %v %v", err, r)
		}
		var sd time.Time
		if err := s.Journal.Pool.QueryRow(context.Background(), "SELECT settle_date FROM txn WHERE rrn = $1", r.Resp.RRN).Scan(&sd); err != nil {
			t.Fatal(err)
		}
		if r.Resp.SettleDate != c.want || sd.Format("0102") != c.want {
			t.Errorf("purchase at %s: F15 %s, settle_date %s, want %s", at.Format(time.RFC3339), r.Resp.SettleDate, sd.Format("0102"), c.want)
		}
	}
}
