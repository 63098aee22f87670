package posswitch_test

import (
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/spec/pos"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dial opens a raw socket to the production listener.
func dial(t *testing.T, s *switchtest.Switch) net.Conn {
	c, err := net.Dial("tcp", s.Addr(terminals.Production))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// closed reports whether the peer closed c (reads EOF or reset before the deadline).
func closed(c net.Conn, within time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(within))
	_, err := io.ReadAll(c)
	return err == nil || !strings.Contains(err.Error(), "timeout")
}

// TestMalformedFrames: garbage, truncated, oversized and trailing-byte frames get 30 or a closed
// connection, never a crash or a stuck socket, and a terminal beside them keeps being served.
func TestMalformedFrames(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{Edit: func(y string) string {
		return y + "limits:\n  idle_timeout: 1s\n"
	}})
	healthy := s.SignedOn("10000007") // the subtests sign 10000001 on again and again
	purchase := func() {
		r, err := healthy.Purchase(good, 100)
		if err != nil { // the 1 s idle timeout closed it meanwhile: a terminal redials
			healthy = s.SignedOn("10000007")
			r, err = healthy.Purchase(good, 100)
		}
		require.NoError(t, err)
		require.Equal(t, rc.Approved, r.Code(), "the healthy terminal is still served")
	}
	purchase()

	t.Run("trailing bytes: 30", func(t *testing.T) {
		d := s.SignedOn("10000001")
		req, _ := d.PurchaseRequest(good, 100)
		m, _ := pos.Marshal(req)
		b, err := pos.Encode(m, nil)
		require.NoError(t, err)
		b = append(b, 0xAB, 0xCD)
		r, err := d.RoundTrip(b)
		require.NoError(t, err)
		assert.Equal(t, rc.FormatError, r.Code())
		assert.Equal(t, "0210", r.Frame.Head().MTI)
		purchase()
	})
	t.Run("bad BCD digit in a field: 30", func(t *testing.T) {
		d := s.SignedOn("10000001")
		req, _ := d.PurchaseRequest(good, 100)
		m, _ := pos.Marshal(req)
		b, _ := pos.Encode(m, nil)
		f, err := pos.Decode(b)
		require.NoError(t, err)
		b[f.Layout.Field(4).Start] = 0xAA // amount digits A A
		r, err := d.RoundTrip(b)
		require.NoError(t, err)
		assert.Equal(t, rc.FormatError, r.Code())
		purchase()
	})
	t.Run("garbage: closed", func(t *testing.T) {
		c := dial(t, s)
		_, err := c.Write(pos.WithLen([]byte(strings.Repeat("garbage!", 10))))
		require.NoError(t, err)
		assert.True(t, closed(c, 5*time.Second), "a frame with no readable head closes the connection")
		purchase()
	})
	t.Run("oversized LEN: closed", func(t *testing.T) {
		c := dial(t, s)
		var hdr [2]byte
		binary.BigEndian.PutUint16(hdr[:], 3000)
		_, err := c.Write(append(hdr[:], make([]byte, 3000)...))
		require.NoError(t, err)
		assert.True(t, closed(c, 5*time.Second))
		purchase()
	})
	t.Run("undersized LEN: closed", func(t *testing.T) {
		c := dial(t, s)
		_, err := c.Write([]byte{0, 5, 1, 2, 3, 4, 5})
		require.NoError(t, err)
		assert.True(t, closed(c, 5*time.Second))
		purchase()
	})
	t.Run("truncated: the idle timeout closes it", func(t *testing.T) {
		c := dial(t, s)
		_, err := c.Write([]byte{0, 200, 0x60, 0, 3, 0, 0})
		require.NoError(t, err)
		purchase() // served while the other socket waits for bytes that never come
		assert.True(t, closed(c, 5*time.Second), "closed after the idle timeout")
		purchase()
	})
}
