package issuerlink

import (
	"errors"
	"fmt"
	"time"

	"github.com/shoudan/shoudan/spec/upstream"
)

// EndpointChange is what one endpoint answered to a key change.
type EndpointChange struct {
	Addr string
	// Sent is false when the endpoint had no live connection: it receives the key when a
	// connection signs on again (SetKeyChange).
	Sent bool
	Err  error
}

// ChangeKey sends a key change (0800, F70 101, the new zone PIN key under the zone master key in
// F48) to every endpoint of every route that has a live connection, and waits for each answer.
// It fails unless every endpoint it reached answered 00 with the same check value and at least
// one endpoint was reached; the caller switches to the new key only then (SetKeyChange, and the
// security module's zone key), so a failed change leaves the old key serving. An issuer keeps the
// keys it received by index (F53), so requests already translated under the old key still verify.
func (l *Link) ChangeKey(kc upstream.KeyChange) ([]EndpointChange, error) {
	seen := map[*Endpoint]bool{}
	var out []EndpointChange
	reached := 0
	var errs []error
	for _, n := range l.order {
		r := l.routes[n]
		for _, e := range []*Endpoint{r.primary, r.secondary} {
			if e == nil || seen[e] {
				continue
			}
			seen[e] = true
			ch := EndpointChange{Addr: e.Addr}
			if c := e.pick(); c != nil {
				ch.Sent = true
				reached++
				ch.Err = c.changeKey(kc, time.Now().Add(l.cfg.Timeout))
				if ch.Err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", e.Addr, ch.Err))
				}
			}
			out = append(out, ch)
		}
	}
	if len(errs) > 0 {
		return out, errors.Join(errs...)
	}
	if reached == 0 {
		return out, fmt.Errorf("%w: no endpoint has a live connection to take the key change", ErrNoRoute)
	}
	return out, nil
}

// SetKeyChange makes kc the key change every new connection sends after signing on (nil: none,
// the zone PIN key in use is the one agreed out of band).
func (l *Link) SetKeyChange(kc *upstream.KeyChange) { l.keyChange.Store(kc) }

// changeKey sends a key change on c and checks the answer.
func (c *conn) changeKey(kc upstream.KeyChange, deadline time.Time) error {
	m := c.ep.link.management("0800", "")
	m.NetCode, m.Additional = upstream.NetKeyChange, kc.String()
	resp, _, err := c.roundTrip(m, deadline)
	if err != nil {
		return fmt.Errorf("key change: %w", err)
	}
	if resp.RespCode != "00" {
		return fmt.Errorf("key change: the issuer answered %q (expected 00: 30 = it takes no key change, 96 = the key did not unwrap under its zone master key)", resp.RespCode)
	}
	if resp.Additional != kc.KCV {
		return fmt.Errorf("key change: the issuer found check value %q, expected %s", resp.Additional, kc.KCV)
	}
	return nil
}
