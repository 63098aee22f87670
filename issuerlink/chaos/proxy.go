// Package chaos is a fault-injecting TCP proxy for tests: put it between the switch and an
// issuer and it drops, stalls, half-closes and delays the connections through it at random,
// the way a bad network, a firewall that forgets sessions or a hung issuer process would.
// Faults are switched on and off while it runs; with them off it is a plain relay.
package chaos

import (
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Faults say how often each fault strikes a connection. Every connection draws its next fault
// after an exponentially distributed wait with mean Every; the kind is chosen by the weights.
type Faults struct {
	Every time.Duration // mean time between faults on one connection (0 = no faults)
	// Weights of the kinds (0 = never).
	Drop, Stall, HalfClose, Delay, Refuse int
	// StallFor and DelayFor bound how long a stall or a delay lasts (uniform in [0, max]); with
	// StallForever half the stalls never end (a dead peer that keeps the socket open).
	StallFor, DelayFor time.Duration
	StallForever       bool
	// DelayBy is the extra latency of each chunk while a delay lasts (uniform in [0, DelayBy]).
	DelayBy time.Duration
}

// Counts is what the proxy has done.
type Counts struct {
	Accepted, Refused, Dropped, Stalled, HalfClosed, Delayed int64
}

// Proxy relays connections from Addr to Target.
type Proxy struct {
	Addr   string
	Target string

	ln     net.Listener
	faults atomic.Pointer[Faults]
	mu     sync.Mutex
	pairs  map[*pair]struct{}
	closed bool
	wg     sync.WaitGroup

	accepted, refused, dropped, stalled, halfClosed, delayed atomic.Int64
}

// Listen starts a proxy on addr ("127.0.0.1:0" for a free port) to target.
func Listen(addr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: ln.Addr().String(), Target: target, ln: ln, pairs: map[*pair]struct{}{}}
	p.faults.Store(&Faults{})
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// SetFaults replaces the fault settings; connections pick them up at their next draw.
func (p *Proxy) SetFaults(f Faults) { p.faults.Store(&f) }

// SetTarget points new connections at another address (existing ones keep theirs).
func (p *Proxy) SetTarget(t string) {
	p.mu.Lock()
	p.Target = t
	p.mu.Unlock()
}

// Counts reports what was injected so far.
func (p *Proxy) Counts() Counts {
	return Counts{p.accepted.Load(), p.refused.Load(), p.dropped.Load(), p.stalled.Load(), p.halfClosed.Load(), p.delayed.Load()}
}

// Heal ends every stall and delay now and stops new faults.
func (p *Proxy) Heal() {
	p.SetFaults(Faults{})
	p.mu.Lock()
	defer p.mu.Unlock()
	for pr := range p.pairs {
		pr.heal()
	}
}

// DropAll closes every relayed connection (an issuer process killed, a firewall flushed).
func (p *Proxy) DropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pr := range p.pairs {
		pr.close()
	}
}

// Close stops accepting and closes every connection.
func (p *Proxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for pr := range p.pairs {
		pr.close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.accepted.Add(1)
		f := p.faults.Load()
		if f.Every > 0 && f.Refuse > 0 && rand.IntN(total(f)) < f.Refuse {
			p.refused.Add(1)
			c.Close()
			continue
		}
		p.mu.Lock()
		target := p.Target
		p.mu.Unlock()
		up, err := net.DialTimeout("tcp", target, 2*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		pr := &pair{down: c.(*net.TCPConn), up: up.(*net.TCPConn), done: make(chan struct{}), wake: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			pr.close()
			return
		}
		p.pairs[pr] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(3)
		go func() { defer p.wg.Done(); pr.pump(pr.up, pr.down) }()
		go func() { defer p.wg.Done(); pr.pump(pr.down, pr.up) }()
		go func() {
			defer p.wg.Done()
			p.strike(pr)
			p.mu.Lock()
			delete(p.pairs, pr)
			p.mu.Unlock()
		}()
	}
}

func total(f *Faults) int { return max(1, f.Drop+f.Stall+f.HalfClose+f.Delay+f.Refuse) }

// strike injects faults into one connection until it is closed.
func (p *Proxy) strike(pr *pair) {
	for {
		f := p.faults.Load()
		wait := 200 * time.Millisecond
		if f.Every > 0 {
			wait = time.Duration(rand.ExpFloat64() * float64(f.Every))
		}
		select {
		case <-pr.done:
			return
		case <-time.After(wait):
		}
		f = p.faults.Load()
		if f.Every == 0 {
			continue
		}
		n := rand.IntN(total(f))
		switch {
		case n < f.Drop:
			p.dropped.Add(1)
			pr.close()
			return
		case n < f.Drop+f.Stall:
			p.stalled.Add(1)
			var d time.Duration
			if !f.StallForever || rand.IntN(2) == 0 {
				d = time.Duration(rand.Int64N(int64(f.StallFor) + 1))
			}
			pr.set(true, 0, d)
		case n < f.Drop+f.Stall+f.HalfClose:
			p.halfClosed.Add(1)
			// one direction ends (FIN) while the other stays open: either the switch sees EOF
			// while the issuer can still write, or the issuer sees EOF while the switch waits
			if rand.IntN(2) == 0 {
				_ = pr.down.CloseWrite()
				_ = pr.up.CloseRead()
			} else {
				_ = pr.up.CloseWrite()
				_ = pr.down.CloseRead()
			}
		case n < f.Drop+f.Stall+f.HalfClose+f.Delay:
			p.delayed.Add(1)
			pr.set(false, time.Duration(rand.Int64N(int64(f.DelayBy)+1)), time.Duration(rand.Int64N(int64(f.DelayFor)+1)))
		}
	}
}

// pair is one relayed connection: down is the client's side, up the target's.
type pair struct {
	down, up *net.TCPConn
	once     sync.Once
	done     chan struct{}
	ended    atomic.Int32 // directions that reached EOF

	mu      sync.Mutex
	stalled bool
	delay   time.Duration
	until   time.Time // end of the current stall or delay (zero: until healed)
	wake    chan struct{}
}

func (pr *pair) close() {
	pr.once.Do(func() {
		close(pr.done)
		pr.down.Close()
		pr.up.Close()
	})
}

func (pr *pair) set(stall bool, delay, d time.Duration) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.stalled, pr.delay = stall, delay
	pr.until = time.Time{}
	if d > 0 {
		pr.until = time.Now().Add(d)
	}
}

func (pr *pair) heal() {
	pr.mu.Lock()
	pr.stalled, pr.delay, pr.until = false, 0, time.Time{}
	close(pr.wake)
	pr.wake = make(chan struct{})
	pr.mu.Unlock()
}

// hold blocks while the pair is stalled and returns the delay to add to the next chunk.
func (pr *pair) hold() (time.Duration, bool) {
	for {
		pr.mu.Lock()
		if !pr.until.IsZero() && time.Now().After(pr.until) {
			pr.stalled, pr.delay, pr.until = false, 0, time.Time{}
		}
		stalled, delay, until, wake := pr.stalled, pr.delay, pr.until, pr.wake
		pr.mu.Unlock()
		if !stalled {
			return delay, true
		}
		var tick <-chan time.Time
		if !until.IsZero() {
			tick = time.After(time.Until(until))
		}
		select {
		case <-pr.done:
			return 0, false
		case <-wake:
		case <-tick:
		}
	}
}

// pump copies src to dst chunk by chunk, honouring stalls and delays; a read or write error on
// either side closes the pair (a half-close only ends its own direction).
func (pr *pair) pump(dst, src *net.TCPConn) {
	buf := make([]byte, 4096)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			delay, ok := pr.hold()
			if !ok {
				return
			}
			if delay > 0 {
				select {
				case <-time.After(delay):
				case <-pr.done:
					return
				}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				pr.close()
				return
			}
		}
		if err != nil {
			// EOF from a half-close: pass the FIN on and let the other direction run
			_ = dst.CloseWrite()
			if pr.ended.Add(1) == 2 {
				pr.close()
				return
			}
			select {
			case <-pr.done:
			case <-time.After(30 * time.Second):
				pr.close()
			}
			return
		}
	}
}
