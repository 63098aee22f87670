package posswitch

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/moov-io/iso8583"
	connection "github.com/moov-io/iso8583-connection"
	"github.com/shoudan/shoudan/spec/pos"
	"github.com/shoudan/shoudan/switch/fixture"
	"github.com/shoudan/shoudan/switch/metrics"
	"github.com/shoudan/shoudan/switch/netserve"
	"github.com/shoudan/shoudan/terminals"
)

// ListenerConfig is one terminal listener, bound to an environment.
type ListenerConfig struct {
	Addr           string
	Env            terminals.Environment
	MaxConns       int           // connections at once
	MaxInFlight    int           // messages in progress per connection
	IdleTimeout    time.Duration // a socket with no complete message for this long is closed
	WriteTimeout   time.Duration // every write gets this deadline (the library wedges without one)
	RequestTimeout time.Duration // budget for one transaction
	Capture        string        // directory for captured QA fixtures ("" = off; never on production)
}

// Listener accepts terminals with its own accept loop (the library's server stops accepting on
// its first error) and drives each socket with iso8583-connection.
type Listener struct {
	Cfg    ListenerConfig
	Switch *Switch
	ln     net.Listener
	slots  chan struct{}
	wg     sync.WaitGroup // running transactions
	conns  sync.Map
	order  sync.Map // TID|MID → *sync.Mutex: one transaction at a time per terminal
	closed chan struct{}
}

// Listen binds the address and starts accepting.
func (s *Switch) Listen(cfg ListenerConfig) (*Listener, error) {
	if cfg.Capture != "" && cfg.Env == terminals.Production {
		return nil, fmt.Errorf("listener %s: capture is refused on a production listener", cfg.Addr)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	l := &Listener{Cfg: cfg, Switch: s, ln: ln, slots: make(chan struct{}, cfg.MaxConns), closed: make(chan struct{})}
	go netserve.Accept(l.ln, l.admit)
	return l, nil
}

// Addr is the bound address.
func (l *Listener) Addr() string { return l.ln.Addr().String() }

// admit takes a connection slot or closes a connection over the limit.
func (l *Listener) admit(nc net.Conn) {
	select {
	case l.slots <- struct{}{}:
		l.serve(nc)
	default:
		nc.Close() // over the connection limit
	}
}

func (l *Listener) serve(nc net.Conn) {
	inflight := make(chan struct{}, l.Cfg.MaxInFlight)
	var c *connection.Connection
	c, err := connection.NewFrom(netserve.WriteDeadline(nc, l.Cfg.WriteTimeout), pos.Dialect.Spec, nil, nil,
		connection.SetMessageReader(pos.Reader{}), connection.SetMessageWriter(pos.Writer{}),
		connection.SendTimeout(l.Cfg.WriteTimeout+time.Second),
		connection.ReadTimeout(l.Cfg.IdleTimeout),
		connection.ReadTimeoutHandler(func(c *connection.Connection) { c.Close() }),
		connection.ErrorHandler(func(error) {}),
		connection.InboundMessageHandler(func(c *connection.Connection, m *iso8583.Message) {
			select {
			case inflight <- struct{}{}:
			default:
				c.Close() // a terminal sends one request at a time; this one floods
				return
			}
			defer func() { <-inflight }()
			l.handle(c, m)
		}),
	)
	if err != nil {
		nc.Close()
		<-l.slots
		return
	}
	l.conns.Store(c, struct{}{})
	gauge := metrics.ConnectedTerminals.WithLabelValues(string(l.Cfg.Env))
	gauge.Inc()
	go func() {
		<-c.Done()
		gauge.Dec()
		l.conns.Delete(c)
		<-l.slots
	}()
}

func (l *Listener) handle(c *connection.Connection, m *iso8583.Message) {
	l.wg.Add(1)
	defer l.wg.Done()
	start := time.Now()
	f, err := pos.FrameOf(m)
	if err != nil {
		metrics.FormatErrors.Inc()
		hf := m.GetField(0).(*pos.HeadField)
		if b := l.Switch.FormatError(hf.Raw, hf.ClaimedMTI, err); b != nil {
			_, _ = c.Write(pos.WithLen(b))
			return
		}
		// no head to answer to: a closed connection is the only clear answer (never a stuck socket)
		l.Switch.Log.Info("undecodable frame without a readable head: connection closed", "err", err.Error())
		c.Close()
		return
	}
	// per-terminal order: a reversal waits for its original to finish
	tid, _ := m.GetString(41)
	mid, _ := m.GetString(42)
	mu, _ := l.order.LoadOrStore(tid+"|"+mid, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), l.Cfg.RequestTimeout)
	defer cancel()
	b, kind := l.Switch.Handle(ctx, l.Cfg.Env, f)
	if l.Cfg.Capture != "" && b != nil { // before answering: a fixture exists once its answer does
		if err := fixture.Capture(l.Cfg.Capture, f.Raw, b); err != nil {
			l.Switch.Log.Warn("capture failed", "err", err.Error())
		}
	}
	if b != nil {
		_, _ = c.Write(pos.WithLen(b))
	}
	metrics.TerminalLatency.WithLabelValues(kind).Observe(time.Since(start).Seconds())
}

// Close stops accepting, lets running transactions finish (until ctx ends), then closes every
// connection.
func (l *Listener) Close(ctx context.Context) {
	l.ln.Close()
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	l.conns.Range(func(k, _ any) bool { k.(*connection.Connection).Close(); return true })
}
