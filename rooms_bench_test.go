package presence_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/onlinenow/presence"
)

// BenchmarkTouchIn: a known member touched again within its slot, hot (one
// user; run it with TouchSameSlot/hot$ for Touch in the same run) and among
// 1M users, each a member of one of 1,000 rooms, picked by Zipf, next to
// Touch of the same users ("touch-1M-zipf").
func BenchmarkTouchIn(b *testing.B) {
	b.Run("hot", func(b *testing.B) {
		e := presence.New()
		e.TouchInAt("doc-1", "alice", t0)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := time.Duration(0)
			for pb.Next() {
				i++
				e.TouchInAt("doc-1", "alice", t0.Add(i))
			}
		})
	})
	ids := userIDs()
	rooms := make([]string, 1000)
	for i := range rooms {
		rooms[i] = fmt.Sprint("room-", i)
	}
	e := presence.New()
	for i, id := range ids {
		e.TouchInAt(rooms[i%len(rooms)], id, t0)
	}
	seq := sequence("zipf", 1<<22, len(ids), 1)
	for _, in := range []bool{false, true} {
		name := "touch-1M-zipf"
		if in {
			name = "1M-zipf"
		}
		b.Run(name, func(b *testing.B) {
			var at time.Duration
			var buf [13]byte
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				at++
				n := seq[i&(len(seq)-1)]
				if in {
					e.TouchInAt(rooms[int(n)%len(rooms)], idInto(&buf, n), t0.Add(at))
				} else {
					e.TouchAt(idInto(&buf, n), t0.Add(at))
				}
			}
		})
	}
}

// BenchmarkRoomCount: Count(15m) of one room whose members were seen over
// the last hour, at 100, 100k and 1M members.
func BenchmarkRoomCount(b *testing.B) {
	ids := userIDs()
	for _, n := range []int{100, 100_000, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			clk := newClock()
			e := presence.New(presence.WithClock(clk.Now))
			for i, id := range ids[:n] {
				e.TouchInAt("live", id, t0.Add(-time.Duration(i)*time.Hour/time.Duration(n)))
			}
			r := e.Room("live")
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r.Count(15 * time.Minute)
				}
			})
		})
	}
}
