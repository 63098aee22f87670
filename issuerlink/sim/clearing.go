package sim

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/shoudan/shoudan/spec"
	"github.com/shoudan/shoudan/spec/upstream"
)

// The simulated issuer's daily clearing file: what it approved for one settlement date and
// still stands (purchases not reversed, including voided ones, whose void is its own line;
// voids and refunds not reversed). The acquirer reconciles its journal against it
// (`shoudan settle reconcile`). Text, UTF-8, one record per line, fields separated by "|":
//
//	H|SHOUDAN-SIM|YYYYMMDD|generated (RFC 3339)
//	D|rrn|trace|transmission|mid|tid|kind|amount|auth code|pan (masked)|approved at (RFC 3339)
//	T|count|debit|credit
//
// kind is purchase (debit), void or refund (credit); amounts are fen; trace and transmission
// are the upstream F11 and F7 the acquirer sent; the trailer sums the detail lines. An
// authorisation belongs to the settlement date of its approval time under the cut-off
// (local time of day in loc; at or after it, the next date).

// ClearingCutoff is the issuer's daily cut-off.
type ClearingCutoff struct {
	Loc     *time.Location
	Minutes int // after local midnight; 0 = midnight
}

// DefaultClearingCutoff is 23:00 Asia/Shanghai, the acquirer's default.
func DefaultClearingCutoff() ClearingCutoff {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		loc = time.FixedZone("CST", 8*3600)
	}
	return ClearingCutoff{Loc: loc, Minutes: 23 * 60}
}

// Date is the settlement date (YYYYMMDD) of an approval at t.
func (c ClearingCutoff) Date(t time.Time) string {
	l := t.In(c.Loc)
	d := time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, c.Loc)
	if c.Minutes > 0 && l.Hour()*60+l.Minute() >= c.Minutes {
		d = d.AddDate(0, 0, 1)
	}
	return d.Format("20060102")
}

func (l *Ledger) stamp(req *upstream.Message, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a := l.auths[upstream.Key(req)]; a != nil {
		a.RRN, a.Trace, a.Transmission, a.MID, a.TID, a.At = req.RRN, req.Trace, req.Transmission, req.MID, req.TID, at
	}
}

// WriteClearing writes the clearing file of settlement date (YYYYMMDD) under cutoff.
func (l *Ledger) WriteClearing(w io.Writer, date string, cutoff ClearingCutoff, now time.Time) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "H|SHOUDAN-SIM|%s|%s\n", date, now.Format(time.RFC3339))
	var n int
	var debit, credit int64
	l.Each(func(a Auth) {
		if a.State == "reversed" || a.At.IsZero() || cutoff.Date(a.At) != date {
			return
		}
		fmt.Fprintf(bw, "D|%s|%s|%s|%s|%s|%s|%d|%s|%s|%s\n", a.RRN, a.Trace, a.Transmission, a.MID, a.TID, a.Kind, a.Amount, a.AuthCode,
			spec.MaskPAN(a.PAN), a.At.Format(time.RFC3339))
		n++
		if a.Kind == "purchase" {
			debit += a.Amount
		} else {
			credit += a.Amount
		}
	})
	fmt.Fprintf(bw, "T|%d|%d|%d\n", n, debit, credit)
	return bw.Flush()
}

// clearingHandler serves GET /clearing?date=YYYYMMDD[&cutoff=HH:MM&tz=Zone] (default cut-off
// 23:00 Asia/Shanghai).
func (s *Server) clearingHandler(w http.ResponseWriter, r *http.Request) {
	c := DefaultClearingCutoff()
	if tz := r.URL.Query().Get("tz"); tz != "" {
		loc, err := time.LoadLocation(tz)
		if err != nil {
			http.Error(w, "tz: expected an IANA zone such as Asia/Shanghai", http.StatusBadRequest)
			return
		}
		c.Loc = loc
	}
	if co := r.URL.Query().Get("cutoff"); co != "" {
		t, err := time.Parse("15:04", co)
		if err != nil {
			http.Error(w, "cutoff: expected HH:MM", http.StatusBadRequest)
			return
		}
		c.Minutes = t.Hour()*60 + t.Minute()
	}
	date := r.URL.Query().Get("date")
	if _, err := time.Parse("20060102", date); err != nil {
		http.Error(w, "date: expected YYYYMMDD", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_ = s.Issuer.Ledger.WriteClearing(w, date, c, s.Issuer.Now())
}
