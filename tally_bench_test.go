package presence

import (
	"sync/atomic"
	"testing"
)

// BenchmarkTally: the touch tally's Add from every P, against its floor,
// an atomic add to a cache line each goroutine owns (what any exact
// counter that a scrape may read concurrently costs at least). The gap is
// the sync.Pool Get and Put that find the P's cell.
func BenchmarkTally(b *testing.B) {
	b.Run("tally", func(b *testing.B) {
		t := newTally()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				t.Add()
			}
		})
	})
	b.Run("floor-owned-atomic", func(b *testing.B) {
		t := newTally()
		var w atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			c := &t.cells[int(w.Add(1)-1)%len(t.cells)]
			for pb.Next() {
				c.n.Add(1)
			}
		})
	})
}
