package pginstance

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

func TestStartAdoptStop(t *testing.T) {
	dir, err := os.MkdirTemp("", "shoudan-pg-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o755))
	defer os.RemoveAll(dir)
	ctx := context.Background()
	in, err := Start(ctx, dir)
	require.NoError(t, err)
	defer in.Stop()
	c, err := pgx.Connect(ctx, in.URL())
	require.NoError(t, err)
	var one int
	require.NoError(t, c.QueryRow(ctx, "select 1").Scan(&one))
	c.Close(ctx)
	// a second start on the same directory adopts the running server
	in2, err := Start(ctx, dir)
	require.NoError(t, err)
	require.True(t, in2.adopted)
}
