package issuerlink

import (
	"context"
	"log/slog"
	"time"

	"github.com/shoudan/shoudan/spec"
	"github.com/shoudan/shoudan/spec/upstream"
)

// Reversal is a reversal due for delivery: its queue id, how many times it was sent before, the
// 0420 to send, and the route its original took (the issuer that holds it: a reversal never
// follows the BIN table of the day, which may have changed).
type Reversal struct {
	ID       int64
	Attempts int
	Message  *upstream.Message
	Route    string
}

// Queue is the durable store-and-forward queue (the journal implements it).
type Queue interface {
	Due(ctx context.Context, n int) ([]Reversal, error)
	Ack(ctx context.Context, id int64) error
	Retry(ctx context.Context, id int64, after time.Duration, why string) error
}

// Forwarder delivers queued reversals until the issuer acknowledges each: repeats go out as 0421,
// failures back off exponentially up to MaxBackoff. The issuer applies a reversal once however
// often it is repeated; the queue's lease keeps two senders from sending the same one at once.
type Forwarder struct {
	Link       *Link
	Queue      Queue
	Log        *slog.Logger
	Every      time.Duration
	MaxBackoff time.Duration
	// Result, when set, hears of every attempt: acknowledged or to be retried.
	Result func(acked bool)
}

// Run delivers until ctx ends.
func (f *Forwarder) Run(ctx context.Context) {
	t := time.NewTicker(f.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		due, err := f.Queue.Due(ctx, 64)
		if err != nil {
			continue
		}
		for _, r := range due {
			f.deliver(ctx, r)
		}
	}
}

func (f *Forwarder) deliver(ctx context.Context, r Reversal) {
	m := *r.Message
	m.MTI = "0420"
	if r.Attempts > 0 {
		m.MTI = "0421" // repeat
	}
	m.Trace, m.Transmission = f.Link.NextTrace()
	route := r.Route
	if route == "" { // sealed before routes were journaled: the card's route
		route = f.Link.RouteFor(m.PAN)
	}
	if !f.Link.HasRoute(route) {
		// only the issuer that has the original can reverse it; another would answer 25 and the
		// hold would stay: keep it queued until the route is configured again
		f.Log.Error("reversal held: its original's route is not configured", "id", r.ID, "route", route)
		_ = f.Queue.Retry(ctx, r.ID, f.MaxBackoff, "route "+route+" is not configured")
		return
	}
	resp, _, err := f.Link.SendRoute(route, &m)
	if err == nil && (resp.RespCode == "00" || resp.RespCode == "25") {
		// 25: the issuer never saw the original (e.g. it was swallowed): nothing to reverse
		if err := f.Queue.Ack(ctx, r.ID); err != nil {
			f.Log.Error("reversal acknowledged but not recorded; it will be repeated", "id", r.ID, "err", err)
		}
		if f.Result != nil {
			f.Result(true)
		}
		f.Log.Info("reversal delivered", "id", r.ID, "mti", m.MTI, "pan", spec.MaskPAN(m.PAN), "amount", m.Amount, "issuer_code", resp.RespCode, "route", route)
		return
	}
	why := "no answer"
	if err != nil {
		why = err.Error()
	} else {
		why = "issuer answered " + resp.RespCode
	}
	if f.Result != nil {
		f.Result(false)
	}
	backoff := min(f.MaxBackoff, time.Duration(1<<min(r.Attempts, 10))*200*time.Millisecond)
	_ = f.Queue.Retry(ctx, r.ID, backoff, why)
}
