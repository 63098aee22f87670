// Package issuerlink carries transactions that passed the acquirer's checks to the issuer side:
// shoudan's own client on the spec/upstream codec (several signed-on connections per issuer
// endpoint, replaced at once when they die, echo-tested when they go silent), routes chosen by
// BIN with a primary and a secondary endpoint each, trace numbers generated per link, the 91/98
// semantics, and store-and-forward of reversals.
//
// No request can hang: Send returns within the link's timeout, with an answer, ErrNoRoute (91:
// nothing was sent) or ErrTimeout (98: sent, outcome unknown; the caller reverses it).
package issuerlink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/shoudan/shoudan/spec/upstream"
)

var (
	// ErrNoRoute: no live connection to any endpoint of the route, or the request could not be
	// written at all: nothing reached the issuer (the terminal gets 91).
	ErrNoRoute = errors.New("issuer link: no route (link down)")
	// ErrTimeout: the request may have reached the issuer but no answer came in time (98, and the
	// transaction is reversed).
	ErrTimeout = errors.New("issuer link: no answer in time")
)

// DefaultRoute is the name of the route built from issuer.addrs.
const DefaultRoute = "default"

// Route is a named way to an issuer: a primary endpoint and, optionally, a secondary one that
// fronts the same issuer (the same books: a reversal may go to either).
type Route struct {
	Name      string
	Primary   string
	Secondary string
	// Institution is the issuer's institution code, sent as F100 (receiving institution) on
	// every request of the route when set.
	Institution string
}

// Config shapes a link. Zero values take the defaults in brackets.
type Config struct {
	Routes []Route
	// BINs maps card-number prefixes to route names; the longest matching prefix wins, and a PAN
	// no prefix matches takes Default (the first route when empty).
	BINs    map[string]string
	Default string

	Conns          int           // connections per endpoint [4]
	Timeout        time.Duration // a request's whole budget: queueing, writing, waiting [3s]
	ConnectTimeout time.Duration // dialing one connection [2s]
	WriteTimeout   time.Duration // one write [the timeout]
	Echo           time.Duration // echo (0820) after this long without traffic [30s; <0 off]
	MinBackoff     time.Duration // after the 2nd failed connection attempt in a row [100ms]
	MaxBackoff     time.Duration // ceiling of the exponential backoff [5s]
	// TLS, when set, is called for every dial and the endpoint is dialed with the config it
	// returns (mutual TLS when it carries a certificate), so renewed certificates take effect at
	// the next connection; nil is plain TCP. The handshake is part of the dial (ConnectTimeout).
	TLS func() *tls.Config
	Log *slog.Logger
	// Late hears of answers that arrive after their request timed out; they are never honoured
	// (the timed-out transaction is reversed).
	Late func(*upstream.Message)
	// KeyChange is the zone PIN key in use when a key change brought it: every connection sends
	// it after signing on, from the first (see SetKeyChange).
	KeyChange *upstream.KeyChange
}

func (c *Config) defaults() error {
	if c.Conns == 0 {
		c.Conns = 4
	}
	if c.Timeout == 0 {
		c.Timeout = 3 * time.Second
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 2 * time.Second
	}
	if c.WriteTimeout == 0 || c.WriteTimeout > c.Timeout {
		c.WriteTimeout = c.Timeout
	}
	if c.Echo == 0 {
		c.Echo = 30 * time.Second
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if len(c.Routes) == 0 {
		return errors.New("issuer link: expected at least one route")
	}
	if c.Default == "" {
		c.Default = c.Routes[0].Name
	}
	return nil
}

// Link is the client side of the issuer connections.
type Link struct {
	cfg     Config
	routes  map[string]*route
	order   []string
	bins    []bin // longest prefix first
	trace   atomic.Uint32
	closing atomic.Bool
	// inflight counts Send calls under way (the drain waits for them)
	inflight atomic.Int64
	// keyChange is the zone PIN key in use when it came by a key change: every new connection
	// sends it after signing on (see ChangeKey)
	keyChange atomic.Pointer[upstream.KeyChange]

	// Late is called with answers that arrive after their request timed out (settable after
	// New; Config.Late is the same).
	Late func(*upstream.Message)
}

type route struct {
	Route
	primary, secondary *Endpoint
}

type bin struct{ prefix, route string }

// New starts the link: every endpoint's connections dial and sign on in the background, so New
// succeeds while an issuer is down.
func New(cfg Config) (*Link, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	l := &Link{cfg: cfg, routes: map[string]*route{}}
	l.cfg.Late = func(m *upstream.Message) {
		if l.Late != nil {
			l.Late(m)
		} else if cfg.Late != nil {
			cfg.Late(m)
		}
	}
	l.trace.Store(uint32(time.Now().UnixNano() % 1000000))
	l.keyChange.Store(cfg.KeyChange)
	eps := map[string]*Endpoint{} // an address shared by two routes is one pool
	endpoint := func(addr string) *Endpoint {
		if addr == "" {
			return nil
		}
		if eps[addr] == nil {
			eps[addr] = newEndpoint(l, addr)
		}
		return eps[addr]
	}
	for _, r := range cfg.Routes {
		if r.Primary == "" {
			return nil, fmt.Errorf("issuer link: route %q has no primary endpoint", r.Name)
		}
		l.routes[r.Name] = &route{Route: r, primary: endpoint(r.Primary), secondary: endpoint(r.Secondary)}
		l.order = append(l.order, r.Name)
	}
	if l.routes[cfg.Default] == nil {
		return nil, fmt.Errorf("issuer link: default route %q is not a route", cfg.Default)
	}
	for p, r := range cfg.BINs {
		if l.routes[r] == nil {
			return nil, fmt.Errorf("issuer link: BIN %s names route %q, which is not a route", p, r)
		}
		l.bins = append(l.bins, bin{p, r})
	}
	sort.Slice(l.bins, func(i, j int) bool {
		if len(l.bins[i].prefix) != len(l.bins[j].prefix) {
			return len(l.bins[i].prefix) > len(l.bins[j].prefix)
		}
		return l.bins[i].prefix < l.bins[j].prefix
	})
	return l, nil
}

// Dial starts a link with one route, DefaultRoute: addrs[0] primary, addrs[1] secondary.
func Dial(addrs []string, timeout time.Duration, log *slog.Logger) (*Link, error) {
	r := Route{Name: DefaultRoute}
	if len(addrs) > 0 {
		r.Primary = addrs[0]
	}
	if len(addrs) > 1 {
		r.Secondary = addrs[1]
	}
	return New(Config{Routes: []Route{r}, Timeout: timeout, Log: log})
}

func (l *Link) log() *slog.Logger { return l.cfg.Log }

// RouteFor is the route a card number takes: the longest matching BIN prefix, else the default.
func (l *Link) RouteFor(pan string) string {
	for _, b := range l.bins {
		if strings.HasPrefix(pan, b.prefix) {
			return b.route
		}
	}
	return l.cfg.Default
}

// HasRoute reports whether name is a configured route.
func (l *Link) HasRoute(name string) bool { return l.routes[name] != nil }

// Up reports whether every route has at least one healthy connection.
func (l *Link) Up() bool {
	for _, r := range l.routes {
		if !r.up() {
			return false
		}
	}
	return true
}

// pick is a healthy connection of the primary, else of the secondary.
func (r *route) pick() (*conn, bool) {
	if c := r.primary.pick(); c != nil {
		return c, false
	}
	if r.secondary != nil {
		if c := r.secondary.pick(); c != nil {
			return c, true
		}
	}
	return nil, false
}

func (r *route) up() bool { return r.primary.Up() || (r.secondary != nil && r.secondary.Up()) }

// RouteStatus is one route as operators see it.
type RouteStatus struct {
	Name                       string
	Primary, Secondary         string
	PrimaryLive, SecondaryLive int // signed-on connections
}

// Status lists the routes in config order with their live connections.
func (l *Link) Status() []RouteStatus {
	var out []RouteStatus
	for _, n := range l.order {
		r := l.routes[n]
		s := RouteStatus{Name: n, Primary: r.Primary, Secondary: r.Secondary, PrimaryLive: r.primary.Live()}
		if r.secondary != nil {
			s.SecondaryLive = r.secondary.Live()
		}
		out = append(out, s)
	}
	return out
}

// NextTrace returns a fresh trace number and transmission time (F11, F7) for this link.
func (l *Link) NextTrace() (string, string) {
	n := l.trace.Add(1) % 1000000
	return fmt.Sprintf("%06d", n), time.Now().Format("0102150405")
}

// Via is where a request went: its route and the endpoint that carried it ("" when none did).
type Via struct {
	Route     string
	Endpoint  string
	Secondary bool
}

// Send sends a request on the route of its card number and waits for the answer.
func (l *Link) Send(req *upstream.Message) (*upstream.Message, error) {
	resp, _, err := l.SendRoute(l.RouteFor(req.PAN), req)
	return resp, err
}

// SendRoute sends a request on the named route (the default route when the name is unknown,
// e.g. after a config change): to the primary endpoint while it has a healthy connection, else
// to the secondary. A request that could not be written on one connection (nothing left) tries
// another; once written, its outcome is the answer or ErrTimeout, within the link's timeout.
func (l *Link) SendRoute(name string, req *upstream.Message) (*upstream.Message, Via, error) {
	deadline := time.Now().Add(l.cfg.Timeout)
	r := l.routes[name]
	if r == nil {
		r = l.routes[l.cfg.Default]
	}
	via := Via{Route: r.Name}
	if l.closing.Load() {
		return nil, via, fmt.Errorf("%w: the switch is shutting down", ErrNoRoute)
	}
	l.inflight.Add(1)
	defer l.inflight.Add(-1)
	if r.Institution != "" && req.Receiving == "" {
		cp := *req
		cp.Receiving = r.Institution
		req = &cp
	}
	frame, err := encode(req)
	if err != nil {
		// nothing was sent: the request cannot be expressed upstream
		return nil, via, fmt.Errorf("%w: request does not marshal: %v", ErrNoRoute, err)
	}
	k := key(req)
	var last error
	// with no healthy connection at all, wait a little for one being replaced (a dropped
	// connection is redialled at once) before answering 91
	wait := time.Now().Add(min(l.cfg.Timeout/4, 250*time.Millisecond))
	for attempt := 0; attempt <= 2*l.cfg.Conns && time.Now().Before(deadline); attempt++ {
		c, secondary := r.pick()
		for c == nil && time.Now().Before(wait) {
			time.Sleep(2 * time.Millisecond)
			c, secondary = r.pick()
		}
		if c == nil {
			break
		}
		via.Endpoint, via.Secondary = c.ep.Addr, secondary
		resp, notSent, err := c.exchange(k, frame, deadline)
		switch {
		case err == nil:
			return resp, via, nil
		case notSent:
			last = err
			continue // nothing left: another connection may take it
		default:
			return nil, via, fmt.Errorf("%w: %s via %s: %v", ErrTimeout, r.Name, c.ep.Addr, err)
		}
	}
	via.Endpoint, via.Secondary = "", false
	why := "no live connection"
	if last != nil {
		why = "could not write on any connection"
	}
	where := r.Primary
	if r.Secondary != "" {
		where += " or " + r.Secondary
	}
	return nil, via, fmt.Errorf("%w: route %s: %s to %s", ErrNoRoute, r.Name, why, where)
}

// management is a network management request (sign-on 0800/0001, echo 0820/0301).
func (l *Link) management(mti, code string) *upstream.Message {
	trace, tm := l.NextTrace()
	return &upstream.Message{MTI: mti, Transmission: tm, Trace: trace, Private: code}
}

// Close stops taking requests, lets those under way finish until ctx ends (the drain
// deadline), then closes every connection: requests still waiting end as ErrTimeout, and their
// transactions are reversed.
func (l *Link) Close(ctx context.Context) error {
	l.closing.Store(true)
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for l.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			l.closeAll()
			return nil
		case <-t.C:
		}
	}
	l.closeAll()
	return nil
}

func (l *Link) closeAll() {
	seen := map[*Endpoint]bool{}
	for _, r := range l.routes {
		for _, e := range []*Endpoint{r.primary, r.secondary} {
			if e != nil && !seen[e] {
				seen[e] = true
				e.close()
			}
		}
	}
}
