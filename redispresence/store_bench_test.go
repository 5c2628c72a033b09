package redispresence_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onlinenow/presence/redispresence"
	"github.com/onlinenow/presence/redispresence/redistest"
)

// benchStore returns a Store on a redis-server of its own that flushes
// only when told to.
func benchStore(b *testing.B) *redispresence.Store {
	rdb := client(redistest.Start(b))
	b.Cleanup(func() { rdb.Close() })
	s, err := redispresence.New(rdb, redispresence.WithFlushInterval(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// BenchmarkTouchAt: a user already in the buffer (50k users, round robin),
// from all procs. Nothing talks to Redis on this path.
func BenchmarkTouchAt(b *testing.B) {
	s := benchStore(b)
	ids := make([]string, 50_000)
	for i := range ids {
		ids[i] = fmt.Sprint("user-", i)
		s.TouchAt(ids[i], t0)
	}
	var worker atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(worker.Add(1)) * 7919
		at := t0
		for pb.Next() {
			at = at.Add(time.Microsecond)
			s.TouchAt(ids[i%len(ids)], at)
			i++
		}
	})
}

// BenchmarkQueries: CountSince, one page of 50 and the page after it from
// 16 sets holding 50k users, on loopback; reports p50 and p99 of each.
func BenchmarkQueries(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	for i := range 50_000 {
		s.TouchAt(fmt.Sprint("user-", i), t0.Add(-time.Duration(i)*100*time.Millisecond))
	}
	if err := s.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	var counts, pages, nexts []time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := s.Count(ctx, ago(t0.Add(-15*time.Minute))); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		_, cur, err := s.Page(ctx, ago(t0.Add(-15*time.Minute)), "", 50)
		if err != nil || cur == "" {
			b.Fatal(err, "or no next page")
		}
		third := time.Now()
		if _, _, err := s.Page(ctx, ago(t0.Add(-15*time.Minute)), cur, 50); err != nil {
			b.Fatal(err)
		}
		counts, pages, nexts = append(counts, mid.Sub(start)), append(pages, third.Sub(mid)), append(nexts, time.Since(third))
	}
	pct := func(ds []time.Duration, q float64) float64 {
		slices.Sort(ds)
		return float64(ds[int(q*float64(len(ds)-1))].Microseconds())
	}
	b.ReportMetric(pct(counts, 0.5), "count-p50-µs")
	b.ReportMetric(pct(counts, 0.99), "count-p99-µs")
	b.ReportMetric(pct(pages, 0.5), "page-p50-µs")
	b.ReportMetric(pct(pages, 0.99), "page-p99-µs")
	b.ReportMetric(pct(nexts, 0.5), "next-page-p50-µs")
	b.ReportMetric(pct(nexts, 0.99), "next-page-p99-µs")
}

// BenchmarkPageTies walks 8,000 users who share one microsecond (as
// TouchAt of whole seconds makes them) 50 at a time, from 16 sets: one op is
// the whole walk of 161 pages.
func BenchmarkPageTies(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	const users = 8000
	for i := range users {
		s.TouchAt(fmt.Sprint("user-", i), t0)
	}
	if err := s.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if n := len(slices.Concat(walk(b, s, t0.Add(-time.Minute), pagesOf(50))...)); n != users {
			b.Fatalf("walked %d users, want %d", n, users)
		}
	}
}
