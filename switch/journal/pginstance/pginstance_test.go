package pginstance

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
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

// TestPrivateParent: as root, a data directory inside a private directory (a clone under
// root's 0700 home) gets its cluster where the postgres user can reach it, linked from
// <data dir>/pg; the private directory stays private; a read-only Open finds the same cluster.
func TestPrivateParent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root runs the server as another user")
	}
	home, err := os.MkdirTemp("", "shoudan-home-")
	require.NoError(t, err)
	defer os.RemoveAll(home)
	require.NoError(t, os.Chmod(home, 0o700))
	outside, err := os.MkdirTemp("", "shoudan-outside-")
	require.NoError(t, err)
	defer os.RemoveAll(outside)
	require.NoError(t, os.Chmod(outside, 0o755))
	old := Outside
	Outside = filepath.Join(outside, "lib")
	defer func() { Outside = old }()

	dir := filepath.Join(home, "clone", "data")
	_, err = Open(context.Background(), dir)
	require.ErrorIs(t, err, ErrNoCluster, "a read-only open creates nothing")
	_, err = os.Stat(dir)
	require.True(t, os.IsNotExist(err), "not even the directory")

	in, err := Start(context.Background(), dir)
	require.NoError(t, err)
	defer in.Stop()
	assert.Contains(t, in.Moved, home+" is mode 0700")
	assert.True(t, strings.HasPrefix(in.Data, Outside), in.Data)
	link, err := os.Readlink(filepath.Join(dir, "pg"))
	require.NoError(t, err)
	assert.Equal(t, in.Data, link)
	fi, err := os.Stat(home)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm(), "root's home is not opened up")

	again, err := Open(context.Background(), dir)
	require.NoError(t, err)
	assert.True(t, again.Adopted())
	assert.Equal(t, in.Data, again.Data)
}
