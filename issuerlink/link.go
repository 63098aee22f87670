// Package issuerlink carries transactions that passed the acquirer's checks to the issuer side:
// an iso8583-connection Pool to one or more issuer addresses, trace numbers generated per link,
// the 91/98 semantics, and store-and-forward of reversals.
package issuerlink

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/moov-io/iso8583"
	connection "github.com/moov-io/iso8583-connection"
	"github.com/shoudan/shoudan/spec"
	"github.com/shoudan/shoudan/spec/upstream"
)

var (
	// ErrNoRoute: no live connection to any issuer address (the terminal gets 91).
	ErrNoRoute = errors.New("issuer link: no route (link down)")
	// ErrTimeout: the request may have reached the issuer but no answer came in time (98, and the
	// transaction is reversed).
	ErrTimeout = errors.New("issuer link: no answer in time")
)

// Link is the client side of the issuer connection.
type Link struct {
	pool    *connection.Pool
	trace   atomic.Uint32
	Timeout time.Duration
	Log     *slog.Logger
	// Late is called with answers that arrive after their request timed out; they are never
	// honoured (the timed-out transaction is reversed).
	Late func(*upstream.Message)
}

// traceID matches responses on trace and transmission time: the switch's own numbers, never the
// terminal's STAN (which collides across terminals).
type traceID struct{}

func (traceID) GenerateRequestID(m *iso8583.Message) (string, error) {
	t, err := m.GetString(11)
	if err != nil || t == "" {
		return "", fmt.Errorf("upstream message without trace (F11)")
	}
	tm, _ := m.GetString(7)
	return t + tm, nil
}

// Dial starts a pool to the issuer addresses; it keeps reconnecting in the background with
// exponential backoff, so Dial succeeds even while the issuer is down.
func Dial(addrs []string, timeout time.Duration, log *slog.Logger) (*Link, error) {
	l := &Link{Timeout: timeout, Log: log}
	l.trace.Store(uint32(time.Now().UnixNano() % 1000000))
	factory := func(addr string) (*connection.Connection, error) {
		return connection.New(addr, upstream.Dialect.Spec, upstream.ReadLen, upstream.WriteLen,
			connection.SetMessageReader(upstream.Reader{}), connection.SetMessageWriter(upstream.Writer{}),
			connection.SetRequestIDGenerator(traceID{}),
			connection.ConnectTimeout(2*time.Second),
			connection.SendTimeout(timeout),
			connection.IdleTime(20*time.Second),
			connection.PingHandler(func(c *connection.Connection) { l.echo(c) }),
			connection.OnConnect(l.signOn),
			connection.InboundMessageHandler(l.inbound),
			connection.ErrorHandler(func(err error) {}),
		)
	}
	pool, err := connection.NewPool(factory, addrs,
		connection.PoolReconnectWait(200*time.Millisecond),
		connection.PoolMaxReconnectWait(5*time.Second),
		connection.PoolMinConnections(0))
	if err != nil {
		return nil, err
	}
	if err := pool.Connect(); err != nil {
		log.Warn("issuer link: not connected yet, retrying in the background", "err", err)
	}
	l.pool = pool
	return l, nil
}

// Up reports whether at least one issuer connection is live.
func (l *Link) Up() bool { return l.pool.IsUp() }

// NextTrace returns a fresh trace number and transmission time (F11, F7) for this link.
func (l *Link) NextTrace() (string, string) {
	n := l.trace.Add(1) % 1000000
	return fmt.Sprintf("%06d", n), time.Now().Format("0102150405")
}

// Send sends a request and waits for its answer.
func (l *Link) Send(req *upstream.Message) (*upstream.Message, error) {
	c, err := l.pool.Get()
	if err != nil {
		return nil, ErrNoRoute
	}
	m, err := upstream.Marshal(req)
	if err != nil {
		// nothing was sent: the request cannot be expressed upstream
		return nil, fmt.Errorf("%w: request does not marshal: %v", ErrNoRoute, err)
	}
	resp, err := c.Send(m, connection.SendTimeout(l.Timeout))
	switch {
	case errors.Is(err, connection.ErrSendTimeout), errors.Is(err, connection.ErrConnectionClosed):
		// written or maybe written: the outcome is unknown, so it is a timeout (reverse it)
		return nil, fmt.Errorf("%w: %v", ErrTimeout, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrNoRoute, err)
	}
	var out upstream.Message
	if err := spec.Unmarshal(resp, &out); err != nil {
		return nil, fmt.Errorf("%w: undecodable answer: %v", ErrTimeout, err)
	}
	return &out, nil
}

// signOn is the network sign-on (0800, 60 = 0001) sent on every new connection before it serves
// requests: an issuer that refuses it leaves the connection out of the pool.
func (l *Link) signOn(c *connection.Connection) error {
	trace, tm := l.NextTrace()
	m, err := upstream.Marshal(&upstream.Message{MTI: "0800", Transmission: tm, Trace: trace, Private: "0001"})
	if err != nil {
		return err
	}
	resp, err := c.Send(m, connection.SendTimeout(l.Timeout))
	if err != nil {
		return fmt.Errorf("issuer sign-on: %w", err)
	}
	if code, _ := resp.GetString(39); code != "00" {
		return fmt.Errorf("issuer sign-on: answered %q", code)
	}
	return nil
}

// echo is the periodic network echo (0820, 60 = 0301) sent on an idle connection.
func (l *Link) echo(c *connection.Connection) {
	trace, tm := l.NextTrace()
	m, _ := upstream.Marshal(&upstream.Message{MTI: "0820", Transmission: tm, Trace: trace, Private: "0301"})
	_, _ = c.Send(m, connection.SendTimeout(l.Timeout))
}

func (l *Link) inbound(c *connection.Connection, m *iso8583.Message) {
	var msg upstream.Message
	if spec.Unmarshal(m, &msg) != nil {
		return
	}
	if l.Late != nil && len(msg.MTI) == 4 && (msg.MTI[2] == '1' || msg.MTI[2] == '3') {
		l.Late(&msg)
	}
}

// Close closes the pool.
func (l *Link) Close() error { return l.pool.Close() }
