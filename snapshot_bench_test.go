package presence_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onlinenow/presence"
)

// BenchmarkSnapshotWrite10M writes the 10M-user engine (times spread evenly
// over 24h, random ID order) to io.Discard.
func BenchmarkSnapshotWrite10M(b *testing.B) {
	e := big(b)
	var size int64
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		n, err := e.WriteTo(io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		size = n
	}
	b.ReportMetric(float64(bigUsers)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(size)/bigUsers, "bytes/record")
}

// BenchmarkSnapshotWriteMeta writes 1M users of whom every one, or every
// tenth, carries meta (as with the middleware's meta recording on): each
// such record costs a probe of the meta map.
func BenchmarkSnapshotWriteMeta(b *testing.B) {
	for _, every := range []int{1, 10} {
		b.Run(fmt.Sprintf("every-%d", every), func(b *testing.B) {
			ids := userIDs()
			e := filledEngine(ids)
			for i := 0; i < len(ids); i += every {
				e.SetMeta(ids[i], "203.0.113.7 Mozilla/5.0 (X11; Linux x86_64)")
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := e.WriteTo(io.Discard); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(ids))*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkSnapshotRead10M reads a 10M-user snapshot back: "open" as a
// restart does (Open of the file: read, check, merge into a new engine),
// "open-capped" the same with WithMaxUsers, "merge" with ReadFrom into an
// engine already in use, "merge-expected" the same into an engine whose map
// was sized for 10M users. The engine that wrote the file is dropped first,
// as at a restart: run it alone (-bench SnapshotRead), since the 10M-user
// engine the other benchmarks share would stay in the heap and the
// collector would scan it over and over.
func BenchmarkSnapshotRead10M(b *testing.B) {
	if testing.Short() {
		b.Skip("10M users take a while to build")
	}
	path := filepath.Join(b.TempDir(), "big.snap")
	if err := build10M().SaveFile(path); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	check := func(fresh *presence.Engine) {
		if fresh.Len() != bigUsers {
			b.Fatalf("read %d users", fresh.Len())
		}
	}
	// "open-capped" opens with a cap the file fits under, as the README's
	// quick start configures an engine.
	for _, tc := range []struct {
		name string
		opts []presence.OpenOption
	}{{"open", nil}, {"open-capped", []presence.OpenOption{presence.WithMaxUsers(2 * bigUsers)}}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				fresh, err := presence.Open(path, tc.opts...)
				if err != nil {
					b.Fatal(err)
				}
				check(fresh)
				fresh.Close()
			}
			b.ReportMetric(float64(bigUsers)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
	// "merge" grows the map as it goes; "merge-expected" is the same into
	// an engine made with WithExpectedUsers.
	for _, tc := range []struct {
		name     string
		expected int
	}{{"merge", 0}, {"merge-expected", bigUsers}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				fresh := presence.New(presence.WithExpectedUsers(tc.expected))
				fresh.TouchAt("someone", t0)
				if err := fresh.LoadFile(path); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(bigUsers)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkTouchDuringSnapshot measures Touch latency from two goroutines
// (uniform over the 10M users, each touch a new slot for its user, so every
// one moves an index entry while the snapshot holds clones) while the
// snapshot of 10M users is written. Each op is one whole snapshot; the
// percentiles are over every touch made meanwhile.
func BenchmarkTouchDuringSnapshot(b *testing.B) {
	e := big(b)
	var lat [2][]time.Duration
	// Touch times go 100us apart from one snapshot to the next: the
	// engine's clock stays at t0, and times this close ahead of it (minutes,
	// not days) are counted as any.
	var ticks [2]int
	for range b.N {
		var stop atomic.Bool
		var wg sync.WaitGroup
		for g := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(g), 1))
				var buf [13]byte
				for ; !stop.Load(); ticks[g]++ {
					id := idInto(&buf, int32(rng.IntN(bigUsers)))
					at := t0.Add(time.Duration(ticks[g]) * 100 * time.Microsecond)
					start := time.Now()
					e.TouchAt(id, at)
					lat[g] = append(lat[g], time.Since(start))
				}
			}()
		}
		if _, err := e.WriteTo(io.Discard); err != nil {
			b.Fatal(err)
		}
		stop.Store(true)
		wg.Wait()
	}
	all := slices.Concat(lat[0], lat[1])
	slices.Sort(all)
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Nanoseconds()) }
	b.ReportMetric(pct(0.50), "p50-ns")
	b.ReportMetric(pct(0.99), "p99-ns")
	b.ReportMetric(pct(0.999), "p99.9-ns")
	b.ReportMetric(float64(len(all)), "touches")
}
