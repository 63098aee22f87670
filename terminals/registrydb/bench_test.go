package registrydb_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals"
	"github.com/stretchr/testify/require"
)

// benchRegistry seeds a database with the demo registry plus extra terminal rows (keys sealed,
// one row each), as a deployment that registered them one by one would have.
func benchRegistry(b *testing.B, extra int) (*node, *node) {
	url := switchtest.Database(b)
	a, c := openNode(b, url), openNode(b, url)
	spec := demoSpec(b, nil)
	for i := range extra {
		spec.Terminals = append(spec.Terminals, terminals.TerminalSpec{TID: fmt.Sprintf("3%07d", i), MID: demoMID, Serial: fmt.Sprintf("SN-B-%d", i), TMK: "demo"})
	}
	_, err := a.store.ImportFile(context.Background(), "bench seed", spec)
	require.NoError(b, err)
	return a, c
}

// BenchmarkLoad: one snapshot rebuild, what every node does after each change.
func BenchmarkLoad(b *testing.B) {
	for _, extra := range []int{0, 10000} {
		b.Run(fmt.Sprintf("terminals=%d+12000load", 12+extra), func(b *testing.B) {
			a, _ := benchRegistry(b, extra)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.store.Load(ctx); err != nil {
					b.Fatal(err)
				}
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heapMB")
		})
	}
}

// BenchmarkChangeReachesOtherNode: a change made on one node until the other decides by it
// (commit, NOTIFY, the other node's rebuild).
func BenchmarkChangeReachesOtherNode(b *testing.B) {
	for _, extra := range []int{0, 10000} {
		b.Run(fmt.Sprintf("terminals=%d+12000load", 12+extra), func(b *testing.B) {
			a, c := benchRegistry(b, extra)
			ctx := context.Background()
			on := false
			var commit time.Duration
			for b.Loop() {
				on = !on
				start := time.Now()
				ch, err := a.store.SetTerminalQPS(ctx, "bench", "10000007", demoMID, on)
				if err != nil {
					b.Fatal(err)
				}
				commit += time.Since(start)
				for c.reg.Get().Version < ch.Version {
					time.Sleep(100 * time.Microsecond)
				}
			}
			b.ReportMetric(float64(commit.Microseconds())/float64(b.N)/1000, "commit-ms/op")
		})
	}
}
