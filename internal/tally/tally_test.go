package tally

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestConcurrentAdds: adds from many goroutines, with GCs dropping the
// pool's cells meanwhile, all land, each in its own counter.
func TestConcurrentAdds(t *testing.T) {
	tl := New()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10_000 {
				tl.Add(g % Width)
				if i%2500 == 0 {
					runtime.GC()
				}
			}
		}()
	}
	wg.Wait()
	for k := range Width {
		assert.Equal(t, uint64(2*10_000), tl.Load(k), "counter %d", k)
	}
}

// BenchmarkTally: Add from every P, against its floor, an atomic add to a
// cache line each goroutine owns (what any exact counter that a scrape
// may read concurrently costs at least). The gap is the sync.Pool Get and
// Put that find the P's cell.
func BenchmarkTally(b *testing.B) {
	b.Run("tally", func(b *testing.B) {
		t := New()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				t.Add(0)
			}
		})
	})
	b.Run("floor-owned-atomic", func(b *testing.B) {
		t := New()
		var w atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			c := &t.cells[int(w.Add(1)-1)%len(t.cells)]
			for pb.Next() {
				c.n[0].Add(1)
			}
		})
	})
}
