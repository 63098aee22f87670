package issuerlink

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Endpoint is one issuer address with its pool of connections: Conns slots, each kept filled
// by its own goroutine. A connection that dies is replaced at once; only repeated failures to
// connect (or to sign on) back off, exponentially up to MaxBackoff.
type Endpoint struct {
	Addr string
	link *Link

	mu    sync.RWMutex
	conns []*conn // one per slot, nil while the slot reconnects
	rr    atomic.Uint32
	// Failures counts consecutive failed connection attempts (for the log and tests).
	failures atomic.Int64
	ctx      context.Context
	cancel   context.CancelFunc
	stop     <-chan struct{}
	wg       sync.WaitGroup
}

func newEndpoint(l *Link, addr string) *Endpoint {
	e := &Endpoint{Addr: addr, link: l, conns: make([]*conn, l.cfg.Conns)}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.stop = e.ctx.Done()
	for i := range e.conns {
		e.wg.Add(1)
		go e.keep(i)
	}
	return e
}

// Up reports whether at least one connection is signed on and healthy.
func (e *Endpoint) Up() bool { return e.pick() != nil }

// Live is the number of signed-on connections.
func (e *Endpoint) Live() int {
	e.mu.RLock()
	defer e.mu.RUnlock()
	n := 0
	for _, c := range e.conns {
		if c != nil && c.signedOn.Load() && !c.closed() {
			n++
		}
	}
	return n
}

// pick returns the healthy connection with the fewest requests in flight (ties in turn).
func (e *Endpoint) pick() *conn {
	e.mu.RLock()
	defer e.mu.RUnlock()
	n := len(e.conns)
	start := int(e.rr.Add(1))
	var best *conn
	for i := range n {
		c := e.conns[(start+i)%n]
		if c == nil || !c.healthy() {
			continue
		}
		if best == nil || c.inflight.Load() < best.inflight.Load() {
			best = c
		}
	}
	return best
}

// keep fills slot i until the endpoint stops.
func (e *Endpoint) keep(i int) {
	defer e.wg.Done()
	l := e.link
	fails := 0
	for {
		select {
		case <-e.stop:
			return
		default:
		}
		if fails > 1 { // the first retry is immediate; repeated failures back off
			d := min(l.cfg.MaxBackoff, l.cfg.MinBackoff<<min(fails-2, 16))
			d = d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
			select {
			case <-e.stop:
				return
			case <-time.After(d):
			}
		}
		c, err := e.connect()
		if err != nil {
			err = explainConnect(err, l.cfg.TLS != nil, l.cfg.ConnectTimeout)
			fails++
			e.failures.Add(1)
			if fails == 2 || fails%20 == 0 {
				l.log().Warn("issuer link: cannot connect", "endpoint", e.Addr, "attempts", fails, "err", err.Error())
			}
			continue
		}
		e.failures.Store(0)
		began := time.Now()
		e.mu.Lock()
		e.conns[i] = c
		e.mu.Unlock()
		select {
		case <-c.done:
		case <-e.stop:
			c.close(fmt.Errorf("the link is closing"))
		}
		e.mu.Lock()
		e.conns[i] = nil
		e.mu.Unlock()
		if c.answered.Load() <= 1 && time.Since(began) < time.Second {
			fails++ // signed on, then closed before serving anything: a failure too (no hot loop)
		} else {
			fails = 0
		}
		if !e.stopping() {
			l.log().Info("issuer link: connection lost, replacing it", "endpoint", e.Addr, "slot", i, "why", fmt.Sprint(c.err))
		}
	}
}

func (e *Endpoint) stopping() bool {
	select {
	case <-e.stop:
		return true
	default:
		return false
	}
}

// connect dials and signs on (0800, 60 = 0001): only a connection the issuer accepted serves.
func (e *Endpoint) connect() (*conn, error) {
	l := e.link
	ctx, cancel := context.WithTimeout(e.ctx, l.cfg.ConnectTimeout)
	defer cancel()
	c, err := dialConn(ctx, e)
	if err != nil {
		return nil, err
	}
	resp, _, err := c.roundTrip(l.management("0800", "0001"), time.Now().Add(l.cfg.Timeout))
	if err != nil {
		if c.closed() && c.err != nil && !errors.Is(err, c.err) {
			err = fmt.Errorf("%w: %w", err, c.err) // why it closed (a TLS alert, a reset)
		}
		c.close(err)
		return nil, fmt.Errorf("sign-on: %w", err)
	}
	if resp.RespCode != "00" {
		c.close(fmt.Errorf("sign-on refused"))
		return nil, fmt.Errorf("sign-on: the issuer answered %q", resp.RespCode)
	}
	// a connection to an issuer that may have restarted since the last key change carries no
	// PIN until the issuer holds the zone PIN key in use
	if kc := l.keyChange.Load(); kc != nil {
		if err := c.changeKey(*kc, time.Now().Add(l.cfg.Timeout)); err != nil {
			if c.closed() {
				return nil, err
			}
			// still serves what needs no PIN; a new rotation (which needs this connection) mends it
			l.log().Error("issuer link: the issuer did not take the zone PIN key in use: its PIN transactions will be declined until `shoudan keys rotate-zpk` succeeds",
				"endpoint", e.Addr, "key_index", kc.Index, "kcv", kc.KCV, "err", err.Error())
		}
	}
	c.signedOn.Store(true)
	go c.watch()
	return c, nil
}

// inFlight is the number of requests waiting for an answer on the endpoint.
func (e *Endpoint) inFlight() int {
	e.mu.RLock()
	defer e.mu.RUnlock()
	n := 0
	for _, c := range e.conns {
		if c != nil {
			n += int(c.inflight.Load())
		}
	}
	return n
}

// close stops the slots and closes every connection (a sign-on under way ends within its
// timeout, after close has returned).
func (e *Endpoint) close() {
	e.cancel()
	e.mu.RLock()
	for _, c := range e.conns {
		if c != nil {
			c.close(fmt.Errorf("the link is closing"))
		}
	}
	e.mu.RUnlock()
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}
