package posswitch_test

import (
	"testing"
	"time"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals/device"
	"github.com/stretchr/testify/require"
)

// Two switch nodes share one journal. Each keeps terminal states in memory; a sign-on or
// sign-off on one node must reach the other's cache (LISTEN/NOTIFY), so that the terminal's new
// keys and batch work there and its old ones, or a sign-off, are no longer accepted.
func TestTwoNodesShareTerminalState(t *testing.T) {
	answered := func(t *testing.T) func(*device.Result, error) string {
		return func(r *device.Result, err error) string { return code(t, r, err) }
	}
	a := switchtest.Start(t, switchtest.Options{})
	b := switchtest.Start(t, switchtest.Options{Peer: a})
	const tid = "10000001"

	onA := a.SignedOn(tid)
	require.Equal(t, rc.Approved, answered(t)(onA.Purchase(good, 100))) // A now holds the state in memory

	onB := b.Terminal(tid)
	onB.STAN = 50000
	require.Equal(t, rc.Approved, answered(t)(onB.SignOn())) // new keys, next batch, on node B
	require.NotEqual(t, onA.Batch, onB.Batch)

	// the terminal comes back to node A with what node B gave it
	moved := a.Terminal(tid)
	moved.State = onB.State
	moved.STAN = 60000
	require.Eventually(t, func() bool {
		r, err := moved.Purchase(good, 100)
		return err == nil && r.Code() == rc.Approved
	}, 5*time.Second, 20*time.Millisecond, "node A kept serving the keys and batch of before the sign-on on node B")

	// the old keys and batch are refused on node A
	require.Equal(t, rc.SignOnAgain, answered(t)(onA.Purchase(good, 100)))

	// a sign-off on node B reaches node A too
	r, err := onB.SignOff()
	require.Equal(t, rc.Approved, code(t, r, err))
	require.Eventually(t, func() bool {
		r, err := moved.Purchase(good, 100)
		return err == nil && r.Code() == rc.SignOnAgain
	}, 5*time.Second, 20*time.Millisecond, "node A still accepts a terminal signed off on node B")
}
