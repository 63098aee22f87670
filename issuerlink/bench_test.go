package issuerlink_test

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"runtime"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoudan/shoudan/issuerlink"
	"github.com/shoudan/shoudan/issuerlink/sim"
	"github.com/shoudan/shoudan/spec/upstream"
)

const benchPAN = "6222020000000000001"

func benchIssuer(b *testing.B) *sim.Server {
	is := &sim.Issuer{Ledger: sim.NewLedger([]sim.Card{{PAN: benchPAN, Expiry: "2912", Status: "active", Balance: 1_000_000_000_00}}), Now: time.Now}
	s := sim.NewServer(is, sim.Faults{}, slog.New(slog.DiscardHandler))
	if err := s.Start("127.0.0.1:0", ""); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// inquiry is a balance inquiry: a full round trip at the issuer that leaves its books alone.
func inquiry(l *issuerlink.Link) *upstream.Message {
	m := &upstream.Message{MTI: "0200", PAN: benchPAN, ProcCode: upstream.ProcBalance, Expiry: "2912", MCC: "5812", EntryMode: "051",
		Cond: "00", Acquirer: "48020000", Forwarder: "48020000", TID: "90000001", MID: "898310058120001", Currency: "156",
		MerchantName: "Demo Restaurant                         ", Private: "00000", RRN: "000000000001"}
	if l != nil {
		m.Trace, m.Transmission = l.NextTrace()
	}
	return m
}

func reportLatency(b *testing.B, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkLink: the link's latency (serial: one request at a time) and throughput (parallel:
// 16 callers) with 1 and 4 connections to a simulated issuer on loopback, against the raw
// baseline of one synchronous socket with the same codec and no link (the added latency is the
// difference of the serial figures).
func BenchmarkLink(b *testing.B) {
	b.Run("raw/serial", func(b *testing.B) {
		s := benchIssuer(b)
		nc, err := net.Dial("tcp", s.Addr)
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		r := bufio.NewReader(nc)
		var trace atomic.Uint32
		ds := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			m := inquiry(nil)
			m.Trace, m.Transmission = upstreamTrace(trace.Add(1)), time.Now().Format("0102150405")
			start := time.Now()
			f, err := upstream.Frame(m)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := nc.Write(f); err != nil {
				b.Fatal(err)
			}
			raw, err := upstream.ReadFrame(r)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := upstream.Unmarshal(raw); err != nil {
				b.Fatal(err)
			}
			ds = append(ds, time.Since(start))
		}
		b.StopTimer()
		reportLatency(b, ds)
	})
	for _, conns := range []int{1, 4} {
		name := map[int]string{1: "conns=1", 4: "conns=4"}[conns]
		start := func(b *testing.B) *issuerlink.Link {
			s := benchIssuer(b)
			l, err := issuerlink.New(issuerlink.Config{Routes: []issuerlink.Route{{Name: "bench", Primary: s.Addr}}, Conns: conns, Timeout: 5 * time.Second})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { l.Close(context.Background()) })
			for deadline := time.Now().Add(5 * time.Second); !l.Up(); time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatal("link not up")
				}
			}
			return l
		}
		b.Run(name+"/serial", func(b *testing.B) {
			l := start(b)
			ds := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t := time.Now()
				resp, err := l.Send(inquiry(l))
				if err != nil || resp.RespCode != "00" {
					b.Fatalf("%v %v", err, resp)
				}
				ds = append(ds, time.Since(t))
			}
			b.StopTimer()
			reportLatency(b, ds)
		})
		b.Run(name+"/parallel16", func(b *testing.B) {
			l := start(b)
			b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0))) // 16 callers in all
			var failed atomic.Int64
			began := time.Now()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if resp, err := l.Send(inquiry(l)); err != nil || resp.RespCode != "00" {
						failed.Add(1)
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "req/s")
			if failed.Load() > 0 {
				b.Fatalf("%d requests failed", failed.Load())
			}
		})
	}
}

func upstreamTrace(n uint32) string {
	const digits = "0123456789"
	b := make([]byte, 6)
	n %= 1000000
	for i := 5; i >= 0; i-- {
		b[i] = digits[n%10]
		n /= 10
	}
	return string(b)
}
