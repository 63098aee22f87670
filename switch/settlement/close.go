package settlement

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/shoudan/shoudan/switch/journal"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shoudan/shoudan/terminals"
)

// Settler closes settlement days and keeps merchant balances.
type Settler struct {
	DB     *pgxpool.Pool
	Config *Config
	// Current, when set, is the live config: Schedule reads it before every close.
	Current  func() *Config
	Registry func() *terminals.Registry // merchants' MCC and group (集团号)
	Now      func() time.Time
	Log      *slog.Logger
	// AfterMerchant, when set, is called after each merchant's settlement has committed (tests
	// kill the process there to prove a re-run resumes and pays nothing twice).
	AfterMerchant func(n int)
}

func (s *Settler) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Settler) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Snapshot is the terms a settlement date was closed under, stored with it: a re-run of a
// half-closed date uses these, never the config of the moment.
type Snapshot struct {
	Cutoff   string            `json:"cutoff"`
	Default  Terms             `json:"default"`
	Terms    map[string]Terms  `json:"terms"`  // by MID
	Groups   map[string]string `json:"groups"` // MID -> 集团号
	Holidays []string          `json:"holidays"`
	Workdays []string          `json:"workdays"`
}

func (sn *Snapshot) terms(mid string) Terms {
	if t, ok := sn.Terms[mid]; ok {
		return t
	}
	return sn.Default
}

func (sn *Snapshot) calendar() Calendar { return NewCalendar(sn.Holidays, sn.Workdays) }

func (s *Settler) snapshot() *Snapshot {
	h, w := s.Config.Calendar.Lists()
	sn := &Snapshot{Cutoff: s.Config.Cutoff.String(), Default: s.Config.TermsFor("", ""), Terms: map[string]Terms{}, Groups: map[string]string{},
		Holidays: h, Workdays: w}
	if s.Registry != nil {
		for _, m := range s.Registry().Merchants() {
			sn.Terms[m.MID] = s.Config.TermsFor(m.MID, m.MCC)
			if m.Group != "" {
				sn.Groups[m.MID] = m.Group
			}
		}
	}
	for mid := range s.Config.Merchants {
		if _, ok := sn.Terms[mid]; !ok {
			sn.Terms[mid] = s.Config.TermsFor(mid, "")
		}
	}
	return sn
}

// DayResult is a closed settlement date.
type DayResult struct {
	Date      time.Time
	Txns      int64
	Merchants int
	Takings   int64
	Fees      int64
	Refunds   int64 // refunds cleared at this close
	Paid      int64
	Resumed   int  // merchants already settled by an earlier, interrupted run
	Already   bool // the date was closed before this run (reported, not redone)
}

// closeWorkers is how many merchants are settled at once.
const closeWorkers = 4

// ErrNotDue is returned for a settlement date whose cut-off has not passed.
var ErrNotDue = errors.New("settlement date still open")

// Close closes settlement date d, and first every earlier date not yet closed (oldest first:
// balances depend on the order). It is idempotent: a closed date is reported, not redone; a
// date interrupted half-way is resumed merchant by merchant (each merchant's settlement and
// every balance movement it causes commit together, or not at all), under the terms stored
// when it was first started.
func (s *Settler) Close(ctx context.Context, d time.Time) ([]DayResult, error) {
	d = dateOnly(d)
	// the cut-off plus the close delay: a transaction started just before the cut-off has
	// its write-ahead record (and usually its answer) in the journal by then
	if at := s.Config.Cutoff.At(d).Add(s.Config.CloseDelay); s.now().Before(at) {
		return nil, fmt.Errorf("%w: %s can be closed from %s (cut-off %s plus close_delay %s)", ErrNotDue, d.Format("2006-01-02"),
			at.Format(time.RFC3339), s.Config.Cutoff, s.Config.CloseDelay)
	}
	conn, err := s.DB.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	// one run at a time per database; the lock of a run that was killed goes with its
	// session, which the server may take a moment to notice
	for deadline := time.Now().Add(10 * time.Second); ; {
		var got bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", journal.LockSettlement).Scan(&got); err != nil {
			return nil, err
		}
		if got {
			break
		}
		if time.Now().After(deadline) {
			return nil, errors.New("another settlement run holds the settlement lock: wait for it to finish")
		}
		time.Sleep(200 * time.Millisecond)
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", journal.LockSettlement)

	start, err := s.firstOpen(ctx, d)
	if err != nil {
		return nil, err
	}
	var out []DayResult
	for day := start; !day.After(d); day = day.AddDate(0, 0, 1) {
		r, err := s.closeDay(ctx, day)
		if err != nil {
			return out, fmt.Errorf("closing %s: %w", day.Format("2006-01-02"), err)
		}
		out = append(out, *r)
	}
	return out, nil
}

// firstOpen is the oldest date up to d that is not closed: the day after the newest closed
// date, or the first journaled date when nothing was ever closed.
func (s *Settler) firstOpen(ctx context.Context, d time.Time) (time.Time, error) {
	var last *time.Time
	if err := s.DB.QueryRow(ctx, "SELECT max(settle_date) FROM settle_day WHERE state = 'closed'").Scan(&last); err != nil {
		return d, err
	}
	if last != nil {
		if !last.Before(d) {
			return d, nil // d itself (closed: reported again)
		}
		return dateOnly(*last).AddDate(0, 0, 1), nil
	}
	first, ok, err := firstJournalDay(ctx, s.DB)
	if err != nil || !ok || !first.Before(d) {
		return d, err
	}
	return dateOnly(first), nil
}

// merchantDay is one merchant's figures of a settlement date.
type merchantDay struct {
	Purchases, Voids, Reversals, Refunds              int
	PurchaseAmt, VoidAmt, ReversalAmt, RefundAmt, Fee int64
	refunds                                           []*Item
}

func (m *merchantDay) add(it *Item, t Terms) {
	switch it.Kind {
	case "purchase":
		m.Purchases++
		m.PurchaseAmt += it.Amount
	case "void":
		m.Voids++
		m.VoidAmt += it.Amount
	case "reversal":
		m.Reversals++
		m.ReversalAmt += it.Base
	case "refund":
		m.Refunds++
		m.RefundAmt += it.Amount
		m.refunds = append(m.refunds, it)
	}
	m.Fee += it.FeeOf(t)
}

func (m *merchantDay) takings() int64 { return m.PurchaseAmt - m.VoidAmt + m.ReversalAmt }

func (s *Settler) closeDay(ctx context.Context, d time.Time) (*DayResult, error) {
	sn, state, err := s.startDay(ctx, d)
	if err != nil {
		return nil, err
	}
	if state == "closed" {
		r, err := s.dayResult(ctx, d)
		if r != nil {
			r.Already = true
		}
		return r, err
	}
	if n, err := s.Config.pendingAtIssuer(ctx, s.DB, d); err != nil {
		return nil, err
	} else if n > 0 {
		return nil, fmt.Errorf("%d transactions of %s are still waiting for the issuer's answer: close it once they are answered or recovered", n, d.Format("2006-01-02"))
	}
	t0 := time.Now()
	byMID := map[string]*merchantDay{}
	var txns int64
	err = s.Config.scanItems(ctx, s.DB, d, "", false, func(it *Item) {
		m := byMID[it.MID]
		if m == nil {
			m = &merchantDay{}
			byMID[it.MID] = m
		}
		m.add(it, sn.terms(it.MID))
		txns++
	})
	if err != nil {
		return nil, err
	}
	mids := make([]string, 0, len(byMID))
	for mid := range byMID {
		mids = append(mids, mid)
	}
	// merchants without transactions today may still have refunds to clear or credits to pay
	rows, err := s.DB.Query(ctx, "SELECT mid FROM merchant_account WHERE balance <> 0 OR frozen <> 0 UNION SELECT DISTINCT mid FROM refund_clearing WHERE state = 'pending'")
	if err != nil {
		return nil, err
	}
	others, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	for _, mid := range others {
		if byMID[mid] == nil {
			byMID[mid] = &merchantDay{}
			mids = append(mids, mid)
		}
	}
	sort.Strings(mids)
	scanned := time.Since(t0)
	cal := sn.calendar()
	// merchants are independent (each its own account and transaction): a few at a time
	var resumed, settled atomic.Int64
	work := make(chan string)
	errs := make(chan error, closeWorkers)
	var wg sync.WaitGroup
	for range closeWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for mid := range work {
				done, err := s.settleMerchant(ctx, d, mid, byMID[mid], sn, cal)
				if err != nil {
					errs <- fmt.Errorf("merchant %s: %w", mid, err)
					return
				}
				if !done {
					resumed.Add(1)
				}
				n := settled.Add(1)
				if s.AfterMerchant != nil {
					s.AfterMerchant(int(n))
				}
			}
		}()
	}
	var failed error
feed:
	for _, mid := range mids {
		select {
		case work <- mid:
		case failed = <-errs:
			break feed
		}
	}
	close(work)
	wg.Wait()
	if failed == nil {
		select {
		case failed = <-errs:
		default:
		}
	}
	if failed != nil {
		return nil, failed
	}
	if _, err := s.DB.Exec(ctx, `UPDATE settle_day d SET state = 'closed', closed_at = now(), txns = $2,
		merchants = (SELECT count(*) FROM settle_merchant m WHERE m.settle_date = d.settle_date),
		takings = (SELECT coalesce(sum(takings), 0) FROM settle_merchant m WHERE m.settle_date = d.settle_date),
		fees = (SELECT coalesce(sum(fee), 0) FROM settle_merchant m WHERE m.settle_date = d.settle_date),
		refunds = (SELECT coalesce(sum(refunds_cleared), 0) FROM settle_merchant m WHERE m.settle_date = d.settle_date),
		paid = (SELECT coalesce(sum(paid), 0) FROM settle_merchant m WHERE m.settle_date = d.settle_date)
		WHERE settle_date = $1`, d, txns); err != nil {
		return nil, err
	}
	r, err := s.dayResult(ctx, d)
	if r != nil {
		r.Resumed = int(resumed.Load())
		s.log().Info("settlement date closed", "date", d.Format("2006-01-02"), "txns", r.Txns, "merchants", r.Merchants,
			"takings", r.Takings, "fees", r.Fees, "paid", r.Paid, "resumed", r.Resumed,
			"read_s", scanned.Seconds(), "total_s", time.Since(t0).Seconds())
	}
	return r, err
}

// startDay records that d is being closed, with the terms it is closed under, or returns the
// terms of an earlier start.
func (s *Settler) startDay(ctx context.Context, d time.Time) (*Snapshot, string, error) {
	b, err := json.Marshal(s.snapshot())
	if err != nil {
		return nil, "", err
	}
	if _, err := s.DB.Exec(ctx, `INSERT INTO settle_day (settle_date, state, snapshot) VALUES ($1, 'running', $2) ON CONFLICT DO NOTHING`, d, b); err != nil {
		return nil, "", err
	}
	var state string
	var raw []byte
	if err := s.DB.QueryRow(ctx, "SELECT state, snapshot FROM settle_day WHERE settle_date = $1", d).Scan(&state, &raw); err != nil {
		return nil, "", err
	}
	var sn Snapshot
	if err := json.Unmarshal(raw, &sn); err != nil {
		return nil, "", fmt.Errorf("settle_day %s: snapshot: %w", d.Format("2006-01-02"), err)
	}
	return &sn, state, nil
}

func (s *Settler) dayResult(ctx context.Context, d time.Time) (*DayResult, error) {
	r := &DayResult{Date: d}
	err := s.DB.QueryRow(ctx, "SELECT txns, merchants, takings, fees, refunds, paid FROM settle_day WHERE settle_date = $1", d).
		Scan(&r.Txns, &r.Merchants, &r.Takings, &r.Fees, &r.Refunds, &r.Paid)
	return r, err
}

// credit is one settlement date's credit on a merchant balance, and what is left of it.
type credit struct {
	date, payout time.Time
	business     bool // a T+N cycle: paid on business days only
	unpaid       int64
	changed      bool
}

// account is a merchant balance locked for one transaction.
type account struct {
	mid             string
	balance, frozen int64
	credits         []*credit // oldest first
	pending         []*refund // refunds waiting for clearing, oldest first
	tx              pgx.Tx
	batch           *pgx.Batch
}

// refund is a refund waiting for clearing: one already recorded, or one of the date being
// closed (recorded with its outcome at the end).
type refund struct {
	id, amount int64
	at         time.Time
	item       *Item // set for a refund of the date being closed
}

func (a *account) available() int64 { return a.balance - a.frozen }

func lockAccount(ctx context.Context, tx pgx.Tx, mid string) (*account, error) {
	a := &account{mid: mid, tx: tx, batch: &pgx.Batch{}}
	b := &pgx.Batch{}
	b.Queue("INSERT INTO merchant_account (mid) VALUES ($1) ON CONFLICT DO NOTHING", mid)
	b.Queue("SELECT balance, frozen FROM merchant_account WHERE mid = $1 FOR UPDATE", mid).QueryRow(func(r pgx.Row) error {
		return r.Scan(&a.balance, &a.frozen)
	})
	b.Queue("SELECT settle_date, payout_date, cycle LIKE 'T%', unpaid FROM settle_merchant WHERE mid = $1 AND unpaid <> 0 ORDER BY settle_date", mid).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			c := &credit{}
			if err := rows.Scan(&c.date, &c.payout, &c.business, &c.unpaid); err != nil {
				return err
			}
			a.credits = append(a.credits, c)
		}
		return rows.Err()
	})
	b.Queue("SELECT txn_id, amount, at FROM refund_clearing WHERE mid = $1 AND state = 'pending' ORDER BY at, txn_id", mid).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			r := &refund{}
			if err := rows.Scan(&r.id, &r.amount, &r.at); err != nil {
				return err
			}
			a.pending = append(a.pending, r)
		}
		return rows.Err()
	})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *account) entry(kind string, amount int64, ref string) {
	a.batch.Queue("INSERT INTO balance_entry (mid, kind, amount, ref, balance_after, frozen_after) VALUES ($1,$2,$3,$4,$5,$6)",
		a.mid, kind, amount, ref, a.balance, a.frozen)
}

// take removes amount from the credits, oldest positive first (a refund, a negative credit).
func (a *account) take(amount int64, skip *credit) int64 {
	for _, c := range a.credits {
		if amount == 0 {
			break
		}
		if c == skip || c.unpaid <= 0 {
			continue
		}
		n := min(c.unpaid, amount)
		c.unpaid -= n
		c.changed = true
		amount -= n
	}
	return amount
}

// addCredit books a settlement date's credit: a positive one first makes up older deficits, a
// negative one takes from older credits; what remains stays on it.
func (a *account) addCredit(c *credit, amount int64) {
	a.balance += amount
	c.unpaid = amount
	if amount > 0 {
		for _, o := range a.credits {
			if o.unpaid < 0 && c.unpaid > 0 {
				n := min(-o.unpaid, c.unpaid)
				o.unpaid += n
				c.unpaid -= n
				o.changed = true
			}
		}
	} else if amount < 0 {
		c.unpaid = -a.take(-amount, c)
	}
	a.credits = append(a.credits, c)
}

// clearRefunds clears pending refunds oldest first while the available balance covers them
// (a later, smaller refund never overtakes an older one). It returns what it cleared and what
// still waits.
func (a *account) clearRefunds(on time.Time, by string) (cleared, pending int64) {
	blocked := false
	for _, p := range a.pending {
		ok := !blocked && p.amount <= a.available()
		if !ok {
			blocked = true
			pending += p.amount
		} else {
			a.balance -= p.amount
			a.take(p.amount, nil)
			cleared += p.amount
			a.entry("refund", -p.amount, fmt.Sprintf("refund txn %d", p.id))
		}
		switch {
		case p.item != nil && ok:
			a.batch.Queue(`INSERT INTO refund_clearing (txn_id, mid, settle_date, at, rrn, amount, state, cleared_on, cleared_by)
				VALUES ($1,$2,$3,$4,$5,$6,'cleared',$7,$8)`, p.id, a.mid, on, p.at, p.item.RRN, p.amount, on, by)
		case p.item != nil:
			a.batch.Queue(`INSERT INTO refund_clearing (txn_id, mid, settle_date, at, rrn, amount, state) VALUES ($1,$2,$3,$4,$5,$6,'pending')`,
				p.id, a.mid, on, p.at, p.item.RRN, p.amount)
		case ok:
			a.batch.Queue("UPDATE refund_clearing SET state = 'cleared', cleared_on = $2, cleared_by = $3 WHERE txn_id = $1", p.id, on, by)
		}
	}
	return cleared, pending
}

// valueFloor is the earliest value date of a pay-out made now: for D+N credits (paid any
// day) and for T+N credits (paid on business days).
type valueFloor struct{ anyDay, businessDay time.Time }

// floorAt is the value floor of a pay-out instructed on local date day: a close instructs
// after the day's banking hours, so T+N money goes out on the next business day.
func floorAt(cal Calendar, day time.Time, atClose bool) valueFloor {
	b := day
	if atClose {
		b = b.AddDate(0, 0, 1)
	}
	for !cal.BusinessDay(b) {
		b = b.AddDate(0, 0, 1)
	}
	return valueFloor{anyDay: day, businessDay: b}
}

// pay instructs the pay-out of every credit due by dueBy (oldest first), as far as the
// available balance allows. The value date is the credit's pay-out date, or for a credit
// paid late (held by frozen funds) the floor of its kind of cycle.
func (a *account) pay(dueBy time.Time, floor valueFloor, by string) int64 {
	var paid int64
	for _, c := range a.credits {
		if c.unpaid <= 0 || c.payout.After(dueBy) {
			continue
		}
		n := min(c.unpaid, a.available())
		if n <= 0 {
			break
		}
		c.unpaid -= n
		c.changed = true
		a.balance -= n
		paid += n
		value, f := c.payout, floor.anyDay
		if c.business {
			f = floor.businessDay
		}
		if value.Before(f) {
			value = f
		}
		a.batch.Queue("INSERT INTO payout (mid, credit_date, value_date, amount, made_by) VALUES ($1,$2,$3,$4,$5)", a.mid, c.date, value, n, by)
		a.entry("payout", -n, fmt.Sprintf("pay-out of %s, value %s", c.date.Format("2006-01-02"), value.Format("2006-01-02")))
	}
	return paid
}

// save queues the credits' new unpaid amounts (except skip, inserted by the caller) and the
// account, and sends everything queued.
func (a *account) save(ctx context.Context, skip *credit) error {
	for _, c := range a.credits {
		if c.changed && c != skip {
			a.batch.Queue("UPDATE settle_merchant SET unpaid = $3 WHERE settle_date = $1 AND mid = $2", c.date, a.mid, c.unpaid)
		}
	}
	a.batch.Queue("UPDATE merchant_account SET balance = $2, frozen = $3, updated_at = now() WHERE mid = $1", a.mid, a.balance, a.frozen)
	return a.tx.SendBatch(ctx, a.batch).Close()
}

// settleMerchant settles one merchant's date in one transaction. It reports false when an
// earlier run had already done it.
func (s *Settler) settleMerchant(ctx context.Context, d time.Time, mid string, m *merchantDay, sn *Snapshot, cal Calendar) (bool, error) {
	tx, err := s.DB.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(context.Background())
	// Each merchant commits asynchronously: a crash loses the newest of these commits whole (or
	// none), never part of one, and WAL order is kept; the re-run redoes exactly what was lost.
	// The date's final 'closed' mark is a synchronous commit, which makes all of them durable.
	var exists bool
	b := &pgx.Batch{}
	b.Queue("SET LOCAL synchronous_commit = off")
	b.Queue("SELECT EXISTS (SELECT 1 FROM settle_merchant WHERE settle_date = $1 AND mid = $2)", d, mid).QueryRow(func(r pgx.Row) error { return r.Scan(&exists) })
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return false, err
	}
	if exists {
		return false, nil
	}
	a, err := lockAccount(ctx, tx, mid)
	if err != nil {
		return false, err
	}
	t := sn.terms(mid)
	c := &credit{date: d, payout: cal.PayoutDate(d, t.Cycle), business: t.Cycle.Business}
	creditAmt := m.takings() - m.Fee
	a.addCredit(c, creditAmt)
	if creditAmt != 0 {
		a.entry("credit", creditAmt, "settlement "+d.Format("2006-01-02"))
	}
	for _, r := range m.refunds {
		a.pending = append(a.pending, &refund{id: r.ID, amount: r.Amount, at: r.At, item: r})
	}
	sort.SliceStable(a.pending, func(i, j int) bool {
		if !a.pending[i].at.Equal(a.pending[j].at) {
			return a.pending[i].at.Before(a.pending[j].at)
		}
		return a.pending[i].id < a.pending[j].id
	})
	by := "close:" + d.Format("2006-01-02")
	cleared, pending := a.clearRefunds(d, by)
	paid := a.pay(d.AddDate(0, 0, 1), floorAt(cal, d, true), by)
	a.batch.Queue(`INSERT INTO settle_merchant (settle_date, mid, grp, fee_group, rate_ppm, cap, cycle, payout_date,
		purchases, purchase_amount, voids, void_amount, reversals, reversal_amount, refunds, refund_amount,
		takings, fee, credit, refunds_cleared, refunds_pending, paid, unpaid, balance_after, frozen_after)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25)`,
		d, mid, sn.Groups[mid], t.Group, int64(t.Rate), t.Cap, t.Cycle.String(), c.payout,
		m.Purchases, m.PurchaseAmt, m.Voids, m.VoidAmt, m.Reversals, m.ReversalAmt, m.Refunds, m.RefundAmt,
		m.takings(), m.Fee, creditAmt, cleared, pending, paid, c.unpaid, a.balance, a.frozen)
	if err := a.save(ctx, c); err != nil {
		return false, err
	}
	return true, tx.Commit(ctx)
}
