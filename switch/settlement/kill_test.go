package settlement_test

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shoudan/shoudan/switch/settlement"
)

// TestSettleRunKilled: a settlement run killed half-way (SIGKILL of the process, in the middle
// of a date, with merchants of that date settled and others not), then run again, ends exactly
// where an uninterrupted run ends: every table equal, nothing paid twice.
func TestSettleRunKilled(t *testing.T) {
	ctx := context.Background()
	conf := weekConf(t)
	last := date(week[len(week)-1])
	now := conf.Cutoff.At(last).Add(time.Hour)

	ref := newGenerator(conf)
	ref.generate()
	refURL := freshDB(t, ref)
	refPool := newPool(t, refURL)
	rs := &settlement.Settler{DB: refPool, Config: conf, Registry: registry, Now: func() time.Time { return now }}
	if _, err := rs.Close(ctx, last); err != nil {
		t.Fatal(err)
	}
	want := dump(t, refPool)

	g := newGenerator(conf)
	g.generate()
	url := freshDB(t, g)
	pool := newPool(t, url)
	for _, killAt := range []int{13, 9} { // date 3 after 3 merchants; then (resumed) date 5 after 2
		cmd := exec.Command(os.Args[0], "-test.run=^TestSettleRunChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "SETTLE_CHILD_URL="+url, "SETTLE_CHILD_KILL_AT="+strconv.Itoa(killAt))
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("the settle run was to be killed at merchant %d: %v\n%s", killAt, err, out)
		}
		var running int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM settle_day WHERE state = 'running'").Scan(&running); err != nil || running != 1 {
			t.Fatalf("after the kill: %d dates half-closed, want 1 (%v)", running, err)
		}
	}
	s := &settlement.Settler{DB: pool, Config: conf, Registry: registry, Now: func() time.Time { return now }}
	res, err := s.Close(ctx, last)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Resumed == 0 {
		t.Errorf("the re-run did not resume a half-closed date: %+v", res[0])
	}
	if got := dump(t, pool); got != want {
		t.Fatalf("after kill and re-run the settlement differs from an uninterrupted one:\n got %s\nwant %s", got, want)
	}
}

// TestSettleRunChild is the process TestSettleRunKilled kills: a settle run that SIGKILLs
// itself right after the Nth merchant settlement committed.
func TestSettleRunChild(t *testing.T) {
	url := os.Getenv("SETTLE_CHILD_URL")
	if url == "" {
		t.Skip("run by TestSettleRunKilled")
	}
	killAt, _ := strconv.Atoi(os.Getenv("SETTLE_CHILD_KILL_AT"))
	conf := weekConf(t)
	last := date(week[len(week)-1])
	now := conf.Cutoff.At(last).Add(time.Hour)
	s := &settlement.Settler{DB: newPool(t, url), Config: conf, Registry: registry, Now: func() time.Time { return now }}
	var n atomic.Int32 // across dates; merchants settle concurrently
	s.AfterMerchant = func(int) {
		if n.Add(1) == int32(killAt) {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Minute)
		}
	}
	_, err := s.Close(context.Background(), last)
	t.Fatalf("not killed: %v", err)
}
