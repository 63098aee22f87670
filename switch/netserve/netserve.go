// Package netserve is the TCP plumbing every ISO 8583 listener here shares (the switch's terminal
// listener and the simulated issuer): an accept loop that survives transient errors (the moov
// server package stops on its first), and connections whose every write has a deadline (a write
// to a peer that stopped reading must fail, never block a connection for good).
package netserve

import (
	"errors"
	"net"
	"time"
)

// Accept hands each accepted connection to serve until ln is closed; transient errors (EMFILE
// and friends) back off briefly and keep accepting.
func Accept(ln net.Listener, serve func(net.Conn)) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		serve(nc)
	}
}

// WriteDeadline wraps c so that every Write must finish within d.
func WriteDeadline(c net.Conn, d time.Duration) net.Conn { return deadlineConn{c, d} }

type deadlineConn struct {
	net.Conn
	d time.Duration
}

func (c deadlineConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.d))
	return c.Conn.Write(p)
}
