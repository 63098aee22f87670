package journal_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shoudan/shoudan/switch/switchtest"
)

type commitSpan struct {
	writes     int
	start, end time.Time
}

// overlapping is the pairs of commits that were in flight at the same time.
func overlapping(spans []commitSpan) [][2]commitSpan {
	var out [][2]commitSpan
	for i, a := range spans {
		for _, b := range spans[i+1:] {
			if a.start.Before(b.end) && b.start.Before(a.end) {
				out = append(out, [2]commitSpan{a, b})
			}
		}
	}
	return out
}

// A light load gets one commit at a time, each carrying what gathered while the previous one
// committed; a second commit overlaps the first only once enough writes wait for one.
func TestGroupCommitOverlapsOnlyWhenWorthIt(t *testing.T) {
	j := switchtest.Journal(t)
	var mu sync.Mutex
	var spans []commitSpan
	j.Stats = func(n int, d time.Duration) {
		end := time.Now()
		mu.Lock()
		spans = append(spans, commitSpan{n, end.Add(-d), end})
		mu.Unlock()
	}
	taken := func() []commitSpan {
		mu.Lock()
		defer mu.Unlock()
		out := spans
		spans = nil
		return out
	}
	ctx := context.Background()
	trivial := func(b *pgx.Batch) { b.Queue("SELECT 1") }

	// light: 6 writers, 40 writes each
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 40 {
				assert.NoError(t, j.Commit(ctx, trivial))
			}
		}()
	}
	wg.Wait()
	light := taken()
	writes := 0
	for _, s := range light {
		writes += s.writes
	}
	require.Equal(t, 240, writes, "every write is committed once")
	if pairs := overlapping(light); len(pairs) > 0 {
		t.Errorf("with at most 6 writes waiting, no commit should start beside another; %d pairs of %d commits overlapped, the first of %d and %d writes",
			len(pairs), len(light), pairs[0][0].writes, pairs[0][1].writes)
	}

	// heavy: a slow commit in flight while 40 writers arrive
	slow := make(chan error, 1)
	go func() { slow <- j.Commit(ctx, func(b *pgx.Batch) { b.Queue("SELECT pg_sleep(0.5)") }) }()
	time.Sleep(100 * time.Millisecond) // the slow group is committing
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, j.Commit(ctx, trivial))
		}()
	}
	wg.Wait()
	require.NoError(t, <-slow)
	heavy := taken()
	pairs := overlapping(heavy)
	sizes := make([]int, len(heavy))
	for i, s := range heavy {
		sizes[i] = s.writes
	}
	require.NotEmpty(t, pairs, "40 writes waiting behind a slow commit should get a commit of their own beside it; commits of %v writes, none overlapped", sizes)
	for _, p := range pairs {
		assert.GreaterOrEqual(t, max(p[0].writes, p[1].writes), 16, "a commit beside another carries at least 16 writes, found %d and %d (commits of %v writes)", p[0].writes, p[1].writes, sizes)
	}
}
