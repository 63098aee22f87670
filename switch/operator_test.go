package posswitch_test

import (
	"testing"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/stretchr/testify/require"
)

// TestOperatorJournaled: the operator code a terminal signs on with (F63.1) is kept on every
// transaction taken in that session; the console's merchant operators are scoped by it.
func TestOperatorJournaled(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{})
	d := s.Terminal("10000001")
	d.Operator = "07"
	r, err := d.SignOn()
	require.NoError(t, err)
	require.Equal(t, rc.Approved, r.Code())
	r, err = d.Purchase(good, 1234)
	require.Equal(t, rc.Approved, code(t, r, err))
	require.Equal(t, "07", lastRow(t, s, "898310058120001", "10000001").Operator)
	d.Operator = "02"
	_, err = d.SignOn()
	require.NoError(t, err)
	r, err = d.Purchase(good, 1000)
	require.Equal(t, rc.Approved, code(t, r, err))
	require.Equal(t, "02", lastRow(t, s, "898310058120001", "10000001").Operator)
}
