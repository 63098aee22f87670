// Package pginstance runs a private PostgreSQL server under a data directory with the machine's
// PostgreSQL binaries, so the switch (and every test) gets a durable journal with zero set-up.
// It listens on a Unix socket only. PostgreSQL refuses to run as root, so when the process is
// root the server runs as the `postgres` OS user. That user must be able to reach the cluster:
// when the data directory is inside a private directory (a clone under root's home, mode 0700)
// the cluster is placed under /var/lib/shoudan instead, linked from <data dir>/pg, and
// Instance.Moved says so. Nothing of root's home is made more open.
package pginstance

import (
	"context"
	"crypto/sha256"
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
	Bin    string // directory of initdb, pg_ctl, postgres
	Data   string // PGDATA
	Socket string // directory of the Unix socket
	Port   int
	// Moved says why the cluster is not under the data directory ("" when it is).
	Moved   string
	cred    *syscall.Credential
	adopted bool
}

// Outside is where clusters go that the postgres user could not reach under their data
// directory (root only).
var Outside = "/var/lib/shoudan"

// ErrNoCluster is returned by Open when the data directory holds no cluster.
var ErrNoCluster = errors.New("no PostgreSQL cluster")

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
func Start(ctx context.Context, dataDir string) (*Instance, error) { return start(ctx, dataDir, true) }

// Open is Start for a cluster that must already exist (tools that only read): it creates
// nothing, and fails with ErrNoCluster, naming where it looked, when there is none.
func Open(ctx context.Context, dataDir string) (*Instance, error) { return start(ctx, dataDir, false) }

func start(ctx context.Context, dataDir string, create bool) (*Instance, error) {
	bin, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	dataDir, err = filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	in := &Instance{Bin: bin, Data: filepath.Join(dataDir, "pg"), Socket: filepath.Join(dataDir, "pg"), Port: 5432}
	if os.Geteuid() == 0 {
		if in.cred, err = postgresUser(); err != nil {
			return nil, err
		}
	}
	if !create {
		if _, err := os.Stat(filepath.Join(in.Data, "PG_VERSION")); err != nil {
			return nil, fmt.Errorf("%w in %s (looked for %s): run this where `shoudan serve` runs, or give its config with -c", ErrNoCluster, dataDir, in.Data)
		}
	} else if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	if err := in.place(ctx, dataDir); err != nil {
		return nil, err
	}
	if len(in.Socket) > 90 {
		return nil, fmt.Errorf("data directory %s: its path is too long for a Unix socket (at most 90 characters before /pg): choose a shorter data_dir", dataDir)
	}
	if _, err := os.Stat(filepath.Join(in.Data, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if !create {
			return nil, fmt.Errorf("%w in %s (looked for %s): run this where `shoudan serve` runs, or give its config with -c", ErrNoCluster, dataDir, in.Data)
		}
		if err := in.initdb(ctx); err != nil {
			return nil, err
		}
	}
	if in.running(ctx) {
		in.adopted = true
		return in, in.waitReady(ctx)
	}
	opts := fmt.Sprintf("-c listen_addresses='' -k %s -p %d %s", in.Socket, in.Port, strings.Join(Settings(Memory()), " "))
	_, err = in.run(ctx, "pg_ctl", "start", "-D", in.Data, "-w", "-t", "120", "-l", filepath.Join(in.Data, "server.log"), "-o", opts)
	if err != nil && !in.running(ctx) && strings.Contains(opts, "wal_compression=lz4") {
		// binaries built without lz4: the portable compression
		_, err = in.run(ctx, "pg_ctl", "start", "-D", in.Data, "-w", "-t", "120", "-l", filepath.Join(in.Data, "server.log"), "-o",
			strings.Replace(opts, "wal_compression=lz4", "wal_compression=pglz", 1))
	}
	if err != nil {
		if in.running(ctx) { // another starter won the race
			return in, in.waitReady(ctx)
		}
		return nil, fmt.Errorf("starting PostgreSQL in %s: %v: see its log %s", in.Data, err, in.LogFile())
	}
	if err := in.waitReady(ctx); err != nil {
		_ = in.Stop() // started here: nothing is left running
		return nil, err
	}
	return in, nil
}

// LogFile is the server's log.
func (in *Instance) LogFile() string { return filepath.Join(in.Data, "server.log") }

// place decides where the cluster lives. As root the server runs as postgres, which must be
// able to reach its directory: if it cannot reach the data directory, the cluster goes under
// Outside (a name derived from the data directory, so every start and every tool finds the
// same one) and <data dir>/pg links to it.
func (in *Instance) place(ctx context.Context, dataDir string) error {
	if in.cred == nil {
		return nil
	}
	if real, err := filepath.EvalSymlinks(in.Data); err == nil && real != in.Data {
		in.Data, in.Socket = real, real
	}
	if in.reachable(ctx, filepath.Dir(in.Data)) {
		return nil
	}
	if _, err := os.Stat(filepath.Join(in.Data, "PG_VERSION")); err == nil {
		return fmt.Errorf("the PostgreSQL cluster in %s is not reachable by the postgres OS user (%s): let it through (chmod o+x on that directory) or move the data directory",
			in.Data, privateParent(filepath.Dir(in.Data), int(in.cred.Uid)))
	}
	sum := sha256.Sum256([]byte(dataDir))
	outside := filepath.Join(Outside, fmt.Sprintf("pg-%x", sum[:6]))
	why := fmt.Sprintf("the postgres OS user cannot reach %s (%s)", dataDir, privateParent(dataDir, int(in.cred.Uid)))
	if err := os.MkdirAll(Outside, 0o755); err != nil {
		return fmt.Errorf("%s, and %s cannot be created for the cluster: %v: choose a data_dir outside private directories (e.g. under /srv)", why, Outside, err)
	}
	_ = os.Chmod(Outside, 0o755)
	link := filepath.Join(dataDir, "pg")
	if fi, err := os.Lstat(link); err == nil {
		if fi.Mode()&os.ModeSymlink != 0 || fi.IsDir() {
			_ = os.Remove(link) // a stale link, or the empty directory a failed initdb left
		}
	}
	if err := os.Symlink(outside, link); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s; linking %s to the cluster in %s: %v", why, link, outside, err)
	}
	in.Data, in.Socket = outside, outside
	in.Moved = why + ": the cluster lives in " + outside + " (linked from " + link + ")"
	return nil
}

// reachable reports whether the postgres user can enter dir.
func (in *Instance) reachable(ctx context.Context, dir string) bool {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", `cd "$1"`, "sh", dir)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: in.cred}
	return cmd.Run() == nil
}

// privateParent names the nearest directory on the way to dir that others cannot enter.
func privateParent(dir string, uid int) string {
	for d := dir; ; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil {
			st, ok := fi.Sys().(*syscall.Stat_t)
			if fi.Mode().Perm()&0o001 == 0 && (!ok || int(st.Uid) != uid) {
				return fmt.Sprintf("%s is mode %04o", d, fi.Mode().Perm())
			}
		}
		if d == filepath.Dir(d) {
			return "a directory on the way is private"
		}
	}
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
		last := out
		if i := strings.LastIndex(strings.TrimSpace(out), "\n"); i >= 0 {
			last = strings.TrimSpace(out[i+1:])
		}
		return fmt.Errorf("initdb in %s failed (%v): %s", in.Data, err, last)
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

// Memory is what the private server is sized from: $SHOUDAN_PG_MEMORY (e.g. 2GB, 512MB) when
// set, else the machine's memory (or its cgroup limit, when lower).
func Memory() int64 {
	if v := os.Getenv("SHOUDAN_PG_MEMORY"); v != "" {
		if n, err := ParseBytes(v); err == nil && n > 0 {
			return n
		}
	}
	total := int64(0)
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				total = kb << 10
			}
		}
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && (total == 0 || n < total) {
			total = n
		}
	}
	if total == 0 {
		total = 1 << 30
	}
	return total
}

// ParseBytes reads 512MB, 2GB, 1048576 (bytes).
func ParseBytes(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("expected a size such as 512MB or 2GB, found %q", s)
	}
	return n * mult, nil
}

// Settings are the private server's settings for a machine with mem bytes of memory (they are
// passed on the command line at every start, so a new release's settings apply to an existing
// data directory). Why each (issue 13; see the README's Performance section):
//   - shared_buffers: a quarter of memory (128 MB..8 GB); the default 128 MB made backends
//     write out dirty buffers themselves (pg_stat_bgwriter buffers_backend) once the journal
//     outgrew it. effective_cache_size: half of memory.
//   - the background writer runs every 50 ms and may write 1,000 buffers a round, so that
//     clean buffers are ready before a backend needs one.
//   - WAL: lz4 compression of full-page images (the bulk of the journal's WAL after each
//     checkpoint), checkpoints every 15 min or 4 GB spread over 90% of the interval; commits
//     stay synchronous (no approval without a durable record). wal_init_zero off: a new
//     16 MB WAL segment is not first written full of zeros and fsynced by the backend that
//     crosses into it while it holds WALWriteLock; until checkpoints recycle old segments that
//     stalled every commit for 60-90 ms every 16 MB of WAL (every ~10 s at 1,000/s).
//   - autovacuum looks every 10 s with 10× the default I/O budget; the hot tables' own
//     thresholds are set per partition (txn_ensure_partition).
//   - max_locks_per_transaction 256: a query over every daily partition locks each of them
//     and their indexes.
func Settings(mem int64) []string {
	const mb = int64(1 << 20)
	clamp := func(v, lo, hi int64) int64 { return max(lo, min(hi, v)) }
	sb := clamp(mem/4, 128*mb, 8192*mb)
	return []string{
		"-c max_connections=200",
		fmt.Sprintf("-c shared_buffers=%dMB", sb/mb),
		fmt.Sprintf("-c effective_cache_size=%dMB", clamp(mem/2, 256*mb, 1<<50)/mb),
		fmt.Sprintf("-c maintenance_work_mem=%dMB", clamp(mem/32, 64*mb, 1024*mb)/mb),
		fmt.Sprintf("-c wal_buffers=%dMB", clamp(sb/32, 4*mb, 64*mb)/mb),
		"-c max_wal_size=4GB", "-c min_wal_size=1GB", "-c checkpoint_timeout=15min", "-c checkpoint_completion_target=0.9",
		"-c wal_compression=lz4",
		"-c bgwriter_delay=50ms", "-c bgwriter_lru_maxpages=1000", "-c bgwriter_lru_multiplier=4",
		"-c autovacuum_naptime=10s", "-c autovacuum_vacuum_cost_limit=2000",
		"-c max_locks_per_transaction=256",
		"-c track_io_timing=on",
		"-c wal_init_zero=off",
	}
}
