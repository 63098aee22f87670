package posswitch

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

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
	TLS            *tls.Config   // nil = plain TCP; else TLS (mutual when it asks for client certificates)
}

// handshakeTimeout bounds a TLS handshake (a silent or plaintext peer is closed by then).
const handshakeTimeout = 10 * time.Second

// Listener accepts terminals with its own accept loop and drives each socket with one goroutine
// that reads frames (plus one per message being handled). A terminal is a strict request /
// response peer, so the multiplexing connection of iso8583-connection (three goroutines per
// socket; the issuer link no longer uses it either) is not needed here: with 10,000 idle terminals its
// goroutine stacks alone were 125 MB of the switch's memory (issue 7).
type Listener struct {
	Cfg    ListenerConfig
	Switch *Switch
	ln     net.Listener
	slots  chan struct{}
	conns  sync.Map // net.Conn → struct{}
	order  sync.Map // TID|MID → *sync.Mutex: one transaction at a time per terminal
	// mu orders admissions against Close: no socket is counted in serving once draining is set
	mu      sync.Mutex
	serving sync.WaitGroup // sockets being served; each waits for its transactions before it ends
	// draining: the listener is closing; a request that has already arrived (by drainBy) is
	// answered, none is read after that
	draining atomic.Bool
	drainBy  atomic.Int64 // unix nanoseconds
}

// drainGrace is how long a closing listener still reads requests already on their way: a terminal
// that sent just before the stop gets its answer instead of a reset connection (with a deadline of
// "now" the runtime refuses the read before it looks at data the kernel already holds).
const drainGrace = 250 * time.Millisecond

// Listen binds the address and starts accepting.
func (s *Switch) Listen(cfg ListenerConfig) (*Listener, error) {
	if cfg.Capture != "" && cfg.Env == terminals.Production {
		return nil, fmt.Errorf("listener %s: capture is refused on a production listener", cfg.Addr)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	l := &Listener{Cfg: cfg, Switch: s, ln: ln, slots: make(chan struct{}, cfg.MaxConns)}
	go netserve.Accept(l.ln, l.admit)
	return l, nil
}

// Addr is the bound address.
func (l *Listener) Addr() string { return l.ln.Addr().String() }

// admit takes a connection slot or closes a connection over the limit.
func (l *Listener) admit(nc net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.draining.Load() {
		nc.Close()
		return
	}
	select {
	case l.slots <- struct{}{}:
		l.serving.Add(1)
		go l.serve(nc)
	default:
		nc.Close() // over the connection limit
	}
}

// serve reads frames until the terminal hangs up, stays silent for IdleTimeout (also in the
// middle of a frame), sends a LEN out of range, or floods (more than MaxInFlight messages in
// progress). Each frame is handled on its own goroutine; answers are written whole, one at a
// time, each with a write deadline.
func (l *Listener) serve(nc net.Conn) {
	l.conns.Store(nc, struct{}{})
	gauge := metrics.ConnectedTerminals.WithLabelValues(string(l.Cfg.Env))
	gauge.Inc()
	defer func() {
		nc.Close()
		gauge.Dec()
		l.conns.Delete(nc)
		<-l.slots
		l.serving.Done()
	}()
	if l.Cfg.TLS != nil {
		tc := tls.Server(nc, l.Cfg.TLS)
		_ = nc.SetDeadline(time.Now().Add(handshakeTimeout))
		if err := tc.Handshake(); err != nil { // plaintext, an unknown CA, an expired certificate
			metrics.TLSHandshakeFailures.WithLabelValues(string(l.Cfg.Env)).Inc()
			l.Switch.Log.Info("TLS handshake failed: connection closed", "source", nc.RemoteAddr().String(), "err", err.Error())
			return
		}
		_ = nc.SetDeadline(time.Time{})
		nc = tc
	}
	w := &answerWriter{conn: netserve.WriteDeadline(nc, l.Cfg.WriteTimeout)}
	peer, first := PeerOf(nc), true
	inflight := make(chan struct{}, l.Cfg.MaxInFlight)
	var running sync.WaitGroup // this socket's transactions: their answers go out before it closes
	defer running.Wait()
	// a small buffer: LEN and a typical frame in one read, 512 bytes per idle terminal
	r := bufio.NewReaderSize(nc, 512)
	for {
		_ = nc.SetReadDeadline(time.Now().Add(l.Cfg.IdleTimeout))
		if l.draining.Load() { // after the idle deadline: Close may have set its own just before
			_ = nc.SetReadDeadline(time.Unix(0, l.drainBy.Load()))
		}
		raw, err := pos.ReadFrame(r)
		if err != nil {
			var bad *pos.ErrFrameLength
			if errors.As(err, &bad) {
				l.Switch.rejectRaw(string(l.Cfg.Env), peer, nil, "", err.Error()+" (connection closed)")
			}
			return
		}
		if first { // after the first read: a TLS connection has finished its handshake
			peer, first = PeerOf(nc), false
		}
		select {
		case inflight <- struct{}{}:
		default:
			return // a terminal sends one request at a time; this one floods
		}
		running.Add(1)
		go func() {
			defer func() { <-inflight; running.Done() }()
			if !l.handle(w, peer, raw) {
				nc.Close()
			}
		}()
	}
}

// answerWriter writes whole answers (LEN and body in one Write), one at a time.
type answerWriter struct {
	mu   sync.Mutex
	conn net.Conn
}

func (w *answerWriter) write(b []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.conn.Write(pos.WithLen(b)); err != nil {
		w.conn.Close() // a terminal that cannot take its answer gets a closed connection
	}
}

// handle answers one frame; false means the connection must be closed.
func (l *Listener) handle(w *answerWriter, peer Peer, raw []byte) bool {
	start := time.Now()
	f, err := pos.Decode(raw)
	if err != nil {
		metrics.FormatErrors.Inc()
		if b := l.Switch.FormatError(l.Cfg.Env, peer, raw, err); b != nil {
			w.write(b)
			return true
		}
		// no head to answer to: a closed connection is the only clear answer (never a stuck socket)
		l.Switch.Log.Info("undecodable frame without a readable head: connection closed", "source", peer.String(), "err", err.Error())
		return false
	}
	// per-terminal order: a reversal waits for its original to finish
	tid, _ := f.Msg.GetString(41)
	mid, _ := f.Msg.GetString(42)
	mu, _ := l.order.LoadOrStore(tid+"|"+mid, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), l.Cfg.RequestTimeout)
	defer cancel()
	b, kind := l.Switch.HandleFrom(ctx, peer, l.Cfg.Env, f)
	if l.Cfg.Capture != "" && b != nil { // before answering: a fixture exists once its answer does
		if err := fixture.Capture(l.Cfg.Capture, f.Raw, b); err != nil {
			l.Switch.Log.Warn("capture failed", "err", err.Error())
		}
	}
	if b != nil {
		w.write(b)
	}
	metrics.TerminalLatency.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	return true
}

// Close stops accepting, reads for drainGrace more what terminals had already sent (at most half
// of what ctx leaves), lets running transactions finish and answer (until ctx ends), then closes
// every connection.
func (l *Listener) Close(ctx context.Context) {
	l.ln.Close()
	grace := drainGrace
	if dl, ok := ctx.Deadline(); ok {
		grace = min(grace, time.Until(dl)/2)
	}
	by := time.Now().Add(max(grace, 0))
	l.mu.Lock()
	l.drainBy.Store(by.UnixNano())
	l.draining.Store(true)
	l.mu.Unlock()
	// a socket with nothing under way closes at the deadline, one with a transaction running
	// closes after its answer
	l.conns.Range(func(k, _ any) bool { _ = k.(net.Conn).SetReadDeadline(by); return true })
	done := make(chan struct{})
	go func() { l.serving.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	l.conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
}
