package issuerlink

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoudan/shoudan/spec/upstream"
)

// errNotSent: the request did not leave (no byte was written): another connection may carry it.
var errNotSent = errors.New("not sent")

// conn is one signed-on connection to an issuer endpoint. It never blocks a caller beyond the
// caller's deadline: writes carry deadlines, answers are handed over on buffered channels that
// nobody has to read, and a connection that fails (read error, bad frame length, a write cut
// short, a watchdog that sees no bytes) is closed at once, failing its outstanding requests with
// "outcome unknown".
type conn struct {
	ep   *Endpoint
	nc   net.Conn
	wmu  chan struct{} // the write lock, taken with a deadline
	done chan struct{}
	once sync.Once
	err  error // why it closed (set before done is closed)

	mu      sync.Mutex
	pending map[string]*call
	// liveness: the last time a whole frame was read, and the probe (echo) outstanding
	lastRead atomic.Int64 // unix nanos
	probeAt  atomic.Int64 // unix nanos of the outstanding probe, 0 = none
	signedOn atomic.Bool
	inflight atomic.Int32
	answered atomic.Int64 // answers matched to their requests (the sign-on's included)
}

// call is one request waiting for its answer.
type call struct {
	key  string
	sent int64                  // unix nanos
	ch   chan *upstream.Message // buffered: the reader never waits for the caller
}

func dialConn(ctx context.Context, ep *Endpoint) (*conn, error) {
	l := ep.link
	d := net.Dialer{Timeout: l.cfg.ConnectTimeout, KeepAlive: 15 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", ep.Addr)
	if err != nil {
		return nil, err
	}
	if l.cfg.TLS != nil {
		if nc, err = handshake(ctx, nc, l.cfg.TLS(), ep.Addr); err != nil {
			return nil, err
		}
	}
	c := &conn{ep: ep, nc: nc, wmu: make(chan struct{}, 1), done: make(chan struct{}), pending: map[string]*call{}}
	c.lastRead.Store(time.Now().UnixNano())
	go c.readLoop()
	return c, nil
}

// close ends the connection once; outstanding calls see done and answer "unknown".
func (c *conn) close(why error) {
	c.once.Do(func() {
		c.err = why
		c.signedOn.Store(false)
		close(c.done)
		c.nc.Close()
	})
}

func (c *conn) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// healthy: signed on, open, and not under suspicion (a probe outstanding with nothing read
// since it was sent).
func (c *conn) healthy() bool {
	if !c.signedOn.Load() || c.closed() {
		return false
	}
	p := c.probeAt.Load()
	return p == 0 || c.lastRead.Load() > p
}

// write sends one frame before deadline. errNotSent means nothing left this process; any other
// error means the stream may hold part of it, and the connection is closed.
func (c *conn) write(frame []byte, deadline time.Time) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case c.wmu <- struct{}{}:
	case <-t.C:
		return errNotSent
	case <-c.done:
		return errNotSent
	}
	defer func() { <-c.wmu }()
	wd := time.Now().Add(c.ep.link.cfg.WriteTimeout)
	if deadline.Before(wd) {
		wd = deadline
	}
	_ = c.nc.SetWriteDeadline(wd)
	n, err := c.nc.Write(frame)
	if err == nil {
		return nil
	}
	c.close(fmt.Errorf("write: %w", err))
	if n == 0 {
		return errNotSent
	}
	return err
}

// roundTrip sends m and waits for the answer until deadline. notSent reports that the request
// certainly did not reach the issuer.
func (c *conn) roundTrip(m *upstream.Message, deadline time.Time) (resp *upstream.Message, notSent bool, err error) {
	frame, err := encode(m)
	if err != nil {
		return nil, true, err
	}
	return c.exchange(key(m), frame, deadline)
}

// exchange is roundTrip for a frame already encoded, answered under key k.
func (c *conn) exchange(k string, frame []byte, deadline time.Time) (resp *upstream.Message, notSent bool, err error) {
	cl := &call{key: k, ch: make(chan *upstream.Message, 1), sent: time.Now().UnixNano()}
	c.mu.Lock()
	if c.closed() {
		c.mu.Unlock()
		return nil, true, errNotSent
	}
	c.pending[k] = cl
	c.mu.Unlock()
	c.inflight.Add(1)
	defer func() {
		c.inflight.Add(-1)
		c.mu.Lock()
		if c.pending[k] == cl {
			delete(c.pending, k)
		}
		c.mu.Unlock()
	}()
	if err := c.write(frame, deadline); err != nil {
		return nil, errors.Is(err, errNotSent), err
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case resp = <-cl.ch:
		return resp, false, nil
	case <-t.C:
		c.suspect()
		return nil, false, errors.New("no answer in time")
	case <-c.done:
		// the answer may still have arrived just before the close
		select {
		case resp = <-cl.ch:
			return resp, false, nil
		default:
		}
		return nil, false, fmt.Errorf("connection lost while waiting: %w", c.err)
	}
}

// suspect starts a probe (0820 echo) when none is outstanding: if nothing at all is read from
// the connection for a timeout after it, the watchdog closes the connection.
func (c *conn) suspect() {
	now := time.Now().UnixNano()
	if !c.probeAt.CompareAndSwap(0, now) {
		return
	}
	go func() {
		l := c.ep.link
		_, _, err := c.roundTrip(l.management("0820", "0301"), time.Now().Add(l.cfg.Timeout))
		if err == nil {
			c.probeAt.Store(0)
		}
	}()
}

// watch closes the connection when it is silent: a probe outstanding for longer than the
// timeout with nothing read since, or a request outstanding for half the timeout with nothing
// read since it was sent (which starts a probe). It also sends the idle echo.
func (c *conn) watch() {
	l := c.ep.link
	tick := time.NewTicker(max(10*time.Millisecond, l.cfg.Timeout/10))
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
		}
		now := time.Now().UnixNano()
		last := c.lastRead.Load()
		if p := c.probeAt.Load(); p != 0 && last < p && now-p > int64(l.cfg.Timeout) {
			c.close(fmt.Errorf("no answer to the echo within %s: the link is dead", l.cfg.Timeout))
			return
		}
		if p := c.probeAt.Load(); p != 0 && last > p {
			c.probeAt.CompareAndSwap(p, 0) // bytes arrived since the probe: alive
		}
		if c.oldestUnanswered(last) > int64(l.cfg.Timeout)/2 {
			c.suspect()
		}
		if l.cfg.Echo > 0 && now-last > int64(l.cfg.Echo) && c.signedOn.Load() {
			c.suspect() // idle: the periodic echo
		}
	}
}

// oldestUnanswered is the age of the oldest request sent after the last read.
func (c *conn) oldestUnanswered(last int64) int64 {
	now := time.Now().UnixNano()
	var oldest int64
	c.mu.Lock()
	for _, cl := range c.pending {
		if cl.sent > last && now-cl.sent > oldest {
			oldest = now - cl.sent
		}
	}
	c.mu.Unlock()
	return oldest
}

func (c *conn) readLoop() {
	r := bufio.NewReaderSize(c.nc, 4096)
	l := c.ep.link
	for {
		b, err := upstream.ReadFrame(r)
		if err != nil {
			c.close(readErr(err))
			return
		}
		c.lastRead.Store(time.Now().UnixNano())
		m, err := upstream.Unmarshal(b)
		if err != nil {
			// the frame was consumed whole: the stream is still in step
			l.log().Warn("issuer link: undecodable frame from the issuer", "endpoint", c.ep.Addr, "err", err.Error())
			continue
		}
		if len(m.MTI) == 4 && m.MTI[2]%2 == 0 {
			c.inbound(m)
			continue
		}
		c.mu.Lock()
		cl := c.pending[key(m)]
		delete(c.pending, key(m))
		c.mu.Unlock()
		if cl == nil {
			if l.cfg.Late != nil && !strings.HasPrefix(m.MTI, "08") { // a late echo or sign-on answer is no transaction's
				l.cfg.Late(m)
			}
			continue
		}
		c.answered.Add(1)
		cl.ch <- m // buffered, one answer per call
	}
}

// inbound answers the issuer's own network management (echo, sign-on) requests.
func (c *conn) inbound(m *upstream.Message) {
	if m.MTI[:2] != "08" {
		return
	}
	resp := *m
	resp.MTI = m.MTI[:2] + string(m.MTI[2]+1) + m.MTI[3:]
	resp.RespCode = "00"
	frame, err := encode(&resp)
	if err == nil {
		go func() { _ = c.write(frame, time.Now().Add(c.ep.link.cfg.Timeout)) }()
	}
}

// errClosedByIssuer: the issuer ended the stream (EOF).
var errClosedByIssuer = errors.New("the issuer closed the connection")

func readErr(err error) error {
	if errors.Is(err, io.EOF) {
		return errClosedByIssuer
	}
	return fmt.Errorf("read: %w", err)
}

// key matches an answer to its request: the link's own trace and transmission time.
func key(m *upstream.Message) string { return m.Trace + m.Transmission }

func encode(m *upstream.Message) ([]byte, error) { return upstream.Frame(m) }
