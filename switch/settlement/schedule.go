package settlement

import (
	"context"
	"time"
)

// DueDate is the newest settlement date whose automatic close is due at now (its cut-off plus
// the close delay has passed).
func (c *Config) DueDate(now time.Time) time.Time {
	return dateOnly(c.Cutoff.Date(now.Add(-c.CloseDelay))).AddDate(0, 0, -1)
}

// Schedule closes settlement dates automatically until ctx ends: at start (catching up dates
// missed while nothing ran) and then CloseDelay after every cut-off. A close that fails (issuer
// answers still pending, database down, another node closing) is retried every minute; then
// is called after each successful close (reconciliation, statements).
func (s *Settler) Schedule(ctx context.Context, then func(context.Context, []DayResult)) {
	for {
		run := *s
		if s.Current != nil {
			run.Config = s.Current()
		}
		due := run.Config.DueDate(s.now())
		rs, err := run.Close(ctx, due)
		wait := time.Until(run.Config.Cutoff.At(due.AddDate(0, 0, 1)).Add(run.Config.CloseDelay))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log().Warn("automatic settlement close failed: retrying in a minute", "date", due.Format("2006-01-02"), "err", err.Error())
			wait = time.Minute
		} else if then != nil {
			then(ctx, rs)
		}
		if wait < time.Second {
			wait = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
