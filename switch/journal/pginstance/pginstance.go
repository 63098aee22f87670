// Package pginstance runs a private PostgreSQL server under a data directory with the machine's
// PostgreSQL binaries, so the switch (and every test) gets a durable journal with zero set-up.
// It listens on a Unix socket only. PostgreSQL refuses to run as root, so when the process is
// root the server runs as the `postgres` OS user.
package pginstance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Instance is a running private server.
type Instance struct {
	Bin     string // directory of initdb, pg_ctl, postgres
	Data    string // PGDATA
	Socket  string // directory of the Unix socket
	Port    int
	cred    *syscall.Credential
	adopted bool
}

// FindBinaries locates a PostgreSQL bin directory: $SHOUDAN_PG_BIN, pg_ctl on PATH, then the
// newest /usr/lib/postgresql/*/bin.
func FindBinaries() (string, error) {
	if d := os.Getenv("SHOUDAN_PG_BIN"); d != "" {
		return d, nil
	}
	var dirs []string
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			dirs = append(dirs, filepath.Dir(real))
		}
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(found, func(i, j int) bool { return version(found[i]) > version(found[j]) })
	for _, d := range append(dirs, found...) {
		if complete(d) {
			return d, nil
		}
	}
	return "", errors.New("no PostgreSQL server binaries found (looked for pg_ctl and initdb on PATH, in $SHOUDAN_PG_BIN and in /usr/lib/postgresql/*/bin): install them (Debian: apt-get install postgresql) or configure database.url to use an existing server")
}

// complete reports whether dir holds every server tool this package runs.
func complete(dir string) bool {
	for _, tool := range []string{"initdb", "pg_ctl", "postgres", "pg_isready"} {
		if _, err := os.Stat(filepath.Join(dir, tool)); err != nil {
			return false
		}
	}
	return true
}

func version(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// Start creates the cluster on first use, then starts it, or adopts a server already running on
// the same data directory (left behind when the switch was killed). It waits until the server
// accepts connections.
func Start(ctx context.Context, dataDir string) (*Instance, error) {
	bin, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	dataDir, err = filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	in := &Instance{Bin: bin, Data: filepath.Join(dataDir, "pg"), Socket: filepath.Join(dataDir, "pg"), Port: 5432}
	if len(in.Socket) > 90 {
		return nil, fmt.Errorf("data directory %s: its path is too long for a Unix socket (at most 90 characters before /pg)", dataDir)
	}
	if os.Geteuid() == 0 {
		if in.cred, err = postgresUser(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(in.Data, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if err := in.initdb(ctx); err != nil {
			return nil, err
		}
	}
	if in.running(ctx) {
		in.adopted = true
		return in, in.waitReady(ctx)
	}
	// A journal writes steadily: checkpoints forced by WAL volume (max_wal_size defaults to 1 GB,
	// a minute at 5,000 purchases/s) stalled commits for tens of ms (issue 7); 2 GB over 10 min
	// spreads them, and keeps crash recovery of the journal itself to seconds.
	opts := fmt.Sprintf("-c listen_addresses='' -k %s -p %d -c max_connections=200 -c shared_buffers=128MB"+
		" -c max_wal_size=2GB -c checkpoint_timeout=10min -c checkpoint_completion_target=0.9", in.Socket, in.Port)
	if _, err := in.run(ctx, "pg_ctl", "start", "-D", in.Data, "-w", "-t", "120", "-l", filepath.Join(in.Data, "server.log"), "-o", opts); err != nil {
		if in.running(ctx) { // another starter won the race
			return in, in.waitReady(ctx)
		}
		return nil, fmt.Errorf("starting PostgreSQL in %s: %w (see %s)", in.Data, err, filepath.Join(in.Data, "server.log"))
	}
	return in, in.waitReady(ctx)
}

func (in *Instance) initdb(ctx context.Context) error {
	if err := os.MkdirAll(in.Data, 0o700); err != nil {
		return err
	}
	if in.cred != nil {
		if err := os.Chown(in.Data, int(in.cred.Uid), int(in.cred.Gid)); err != nil {
			return err
		}
		// the postgres user must be able to reach its directory
		_ = os.Chmod(filepath.Dir(in.Data), 0o755)
	}
	if out, err := in.run(ctx, "initdb", "-D", in.Data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-instructions"); err != nil {
		return fmt.Errorf("initdb in %s: %w: %s", in.Data, err, out)
	}
	return nil
}

func (in *Instance) running(ctx context.Context) bool {
	_, err := in.run(ctx, "pg_ctl", "status", "-D", in.Data)
	return err == nil
}

func (in *Instance) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := in.run(ctx, "pg_isready", "-h", in.Socket, "-p", strconv.Itoa(in.Port), "-U", "postgres")
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("PostgreSQL in %s did not become ready within 60 s: %v: %s", in.Data, err, out)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// URL is the connection string for pgx.
func (in *Instance) URL() string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", in.Socket, in.Port)
}

// Stop shuts the server down (fast mode: in-flight transactions roll back, committed data is safe).
func (in *Instance) Stop() error {
	_, err := in.run(context.Background(), "pg_ctl", "stop", "-D", in.Data, "-m", "fast", "-w", "-t", "60")
	return err
}

// Kill stops the server immediately (for tests of a journal outage).
func (in *Instance) Kill() error {
	_, err := in.run(context.Background(), "pg_ctl", "stop", "-D", in.Data, "-m", "immediate", "-w", "-t", "60")
	return err
}

func (in *Instance) run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(in.Bin, name), args...)
	cmd.Dir = "/"
	if in.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: in.cred}
		cmd.Env = append(os.Environ(), "HOME=/tmp")
	}
	if name == "pg_ctl" && len(args) > 0 && args[0] == "start" {
		// the server must outlive neither a test's context nor share our process group's signals
		cmd = exec.Command(cmd.Path, args...)
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: in.cred, Setpgid: true}
		cmd.Env = append(os.Environ(), "HOME=/tmp")
	}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, errors.New("running as root, and PostgreSQL refuses to run as root: a `postgres` OS user is needed (Debian's postgresql package creates it)")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// Adopted reports whether Start found the server already running (another process owns it, so
// a short-lived tool must not stop it).
func (in *Instance) Adopted() bool { return in.adopted }
