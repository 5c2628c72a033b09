package presence_test

import (
	"fmt"
	"math/rand"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/puzpuzpuz/xsync/v3"

	"github.com/onlinenow/presence"
)

// Benchmarks use realistic data unless a name says "hot": a million or more
// distinct users, picked uniformly (every probe likely a cache miss) or by a
// Zipf law (s=1.1: a few users make most requests, as on real sites).

const benchUsers = 1 << 20

var (
	idsOnce  sync.Once
	benchIDs []string
)

func userIDs() []string {
	idsOnce.Do(func() {
		benchIDs = make([]string, benchUsers)
		for i := range benchIDs {
			benchIDs[i] = fmt.Sprintf("user-%08d", i)
		}
	})
	return benchIDs
}

// idInto writes user n's ID into buf and returns it as a string that
// aliases buf, as a server would hold an ID it just parsed from a request:
// the ID's bytes are cache-hot even when the user's map entry is not. The
// engine copies an ID it keeps, so reusing buf is safe.
func idInto(buf *[13]byte, n int32) string {
	copy(buf[:], "user-")
	for i := 12; i >= 5; i-- {
		buf[i] = byte('0' + n%10)
		n /= 10
	}
	return unsafe.String(&buf[0], len(buf))
}

// sequence returns n indexes into [0, users) drawn from dist.
func sequence(dist string, n, users int, seed int64) []int32 {
	rng := rand.New(rand.NewSource(seed))
	out := make([]int32, n)
	switch dist {
	case "uniform":
		for i := range out {
			out[i] = int32(rng.Intn(users))
		}
	case "zipf":
		z := rand.NewZipf(rng, 1.1, 1, uint64(users-1))
		perm := rng.Perm(users) // the popular users are scattered over the map
		for i := range out {
			out[i] = int32(perm[z.Uint64()])
		}
	default:
		panic(dist)
	}
	return out
}

// fixedClock never moves, so a touch never changes slot.
func fixedClock() func() time.Time { return func() time.Time { return t0 } }

// aheadOfAll is a clock far ahead of every time the benchmarks touch: an
// engine counts times more than a few minutes ahead of its clock apart
// from the rest (see WithClock), and the benchmarks that run time forward
// with TouchAt, a second per touch, are not about those.
func aheadOfAll() time.Time { return farAhead }

var farAhead = t0.AddDate(100, 0, 0)

// filledEngine returns an engine, its clock aheadOfAll, holding ids, seen
// a millisecond apart up to t0.
func filledEngine(ids []string, opts ...presence.Option) *presence.Engine {
	e := presence.New(append([]presence.Option{presence.WithClock(aheadOfAll)}, opts...)...)
	for i, id := range ids {
		e.TouchAt(id, t0.Add(-time.Duration(len(ids)-i)*time.Millisecond))
	}
	return e
}

// touchPerGoroutine touches, from each goroutine, a hot user of its own:
// what scaling looks like without two cores writing one cache line.
func touchPerGoroutine(b *testing.B, opts ...presence.Option) {
	e := presence.New(opts...)
	var worker atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		id := fmt.Sprint("user", worker.Add(1))
		e.TouchAt(id, t0)
		i := time.Duration(0)
		for pb.Next() {
			i++
			e.TouchAt(id, t0.Add(i))
		}
	})
}

// BenchmarkTouchSameSlot: a known user whose slot does not change, the path
// every request of an active user takes.
func BenchmarkTouchSameSlot(b *testing.B) {
	// Each goroutine's times grow by a nanosecond per call and stay in t0's
	// one-second slot, so every call does the real work: a CAS that raises
	// lastSeen, then the same-slot check. (Touch is TouchAt of the clock.)
	b.Run("hot", func(b *testing.B) {
		e := presence.New()
		e.TouchAt("alice", t0)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := time.Duration(0)
			for pb.Next() {
				i++
				e.TouchAt("alice", t0.Add(i))
			}
		})
	})
	for _, counted := range []bool{false, true} {
		name := "hot-per-goroutine/touch"
		var opts []presence.Option
		if counted {
			name += "-counted" // WithTouchCount: the striped counter's add
			opts = append(opts, presence.WithTouchCount())
		}
		b.Run(name, func(b *testing.B) { touchPerGoroutine(b, opts...) })
	}
	// The floors of the one above: a bare probe of the same keys
	// ("map-load"), and the least any touch that keeps a time that never
	// goes backwards can do, the probe and a compare-and-swap of the time
	// ("map-load-cas").
	for _, cas := range []bool{false, true} {
		name := "hot-per-goroutine/map-load"
		if cas {
			name += "-cas"
		}
		b.Run(name, func(b *testing.B) {
			m := xsync.NewMapOf[string, *floorUser]()
			var worker atomic.Int64
			var sink atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				id := fmt.Sprint("user", worker.Add(1))
				u, own := newFloorUser(id)
				m.Store(own, u)
				n := int64(0)
				for pb.Next() {
					n++
					if u, ok := m.Load(id); ok && cas {
						old := atomic.LoadInt64(&u.lastSeen)
						atomic.CompareAndSwapInt64(&u.lastSeen, old, old+n)
					} else if ok {
						n += u.lastSeen
					}
				}
				sink.Add(n)
			})
		})
	}
	b.Run("hot-realclock", func(b *testing.B) {
		// The real clock: a vDSO time.Now per call, and the slot changes
		// once a second.
		e := presence.New()
		e.Touch("alice")
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				e.Touch("alice")
			}
		})
	})
	for _, dist := range []string{"uniform", "zipf"} {
		// "touch" and its floor, "map-load" (a bare read-only probe of the
		// same keys in the same order, in an xsync map of the same users),
		// run side by side: the target is touch <= 1.3x map-load.
		ids := userIDs()
		seq := sequence(dist, 1<<22, len(ids), 1)
		b.Run("1M-"+dist+"/touch", func(b *testing.B) {
			e := presence.New()
			for _, id := range ids {
				e.TouchAt(id, t0)
			}
			touchSameSlot(b, e, seq)
		})
		b.Run("1M-"+dist+"/backend-touch", func(b *testing.B) {
			// The same touches through the engine's presence.Backend
			// adapter, as code written against the contract makes them:
			// the target is <= 1.1x touch.
			e := presence.New()
			for _, id := range ids {
				e.TouchAt(id, t0)
			}
			touchSameSlotThrough(b, e.Backend(), seq)
		})
		b.Run("1M-"+dist+"/map-load", func(b *testing.B) {
			m := xsync.NewMapOf[string, *floorUser]()
			for _, id := range ids {
				u, own := newFloorUser(id)
				m.Store(own, u)
			}
			loadSameKeys(b, m, seq)
		})
	}
}

// loadSameKeys is touchSameSlot's floor: each goroutine probes m for the
// users of seq from the same place, and reads what it finds.
func loadSameKeys(b *testing.B, m *xsync.MapOf[string, *floorUser], seq []int32) {
	var worker atomic.Int64
	var sink atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(worker.Add(1)) * 7919
		var buf [13]byte
		n := int64(0)
		for pb.Next() {
			if u, ok := m.Load(idInto(&buf, seq[i&(len(seq)-1)])); ok {
				n += u.lastSeen
			}
			i++
		}
		sink.Add(n)
	})
}

// touchSameSlot times touches of the users of seq from GOMAXPROCS
// goroutines, each starting at its own place in seq, at times a nanosecond
// apart from t0: every touch raises the user's time, in t0's slot.
func touchSameSlot(b *testing.B, e *presence.Engine, seq []int32) {
	var worker atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(worker.Add(1)) * 7919
		at := time.Duration(0)
		var buf [13]byte
		for pb.Next() {
			at++
			e.TouchAt(idInto(&buf, seq[i&(len(seq)-1)]), t0.Add(at))
			i++
		}
	})
}

// touchSameSlotThrough is touchSameSlot through an interface: a call the
// compiler cannot inline or devirtualize.
func touchSameSlotThrough(b *testing.B, r presence.Recorder, seq []int32) {
	var worker atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(worker.Add(1)) * 7919
		at := time.Duration(0)
		var buf [13]byte
		for pb.Next() {
			at++
			r.TouchAt(idInto(&buf, seq[i&(len(seq)-1)]), t0.Add(at))
			i++
		}
	})
}

// BenchmarkTouchMove: every touch enters a new slot, so the index entry moves
// (B-tree delete and insert under the shard's lock). In "uniform" and
// "zipf" each touch is a second after the last; in "1M-each-second" every
// user is touched once a second, in a new random order each second, so a
// million moves share each slot (as on a busy site, where most moves of a
// second land in one slot). "zipf-100k-per-second" moves the distinct users
// of a Zipf stream, 100,000 a second: the moves a Zipf workload makes, where
// a popular user moves once a second and every other touch of it stays in
// its slot (in "zipf", popular users move again and again, their items
// still in cache). "-parallel" makes the moves of "uniform" and "zipf" from
// GOMAXPROCS goroutines at once.
func BenchmarkTouchMove(b *testing.B) {
	b.Run("zipf-100k-per-second", func(b *testing.B) {
		ids := userIDs()
		e := filledEngine(ids)
		const perSec = 100_000
		rng := rand.New(rand.NewSource(9))
		z := rand.NewZipf(rng, 1.1, 1, uint64(len(ids)-1))
		perm := rng.Perm(len(ids))
		seq := make([]int32, 0, b.N)
		for len(seq) < b.N {
			seen := make(map[int32]bool, perSec)
			for len(seen) < perSec && len(seq) < b.N {
				if u := int32(perm[z.Uint64()]); !seen[u] {
					seen[u] = true
					seq = append(seq, u)
				}
			}
		}
		var buf [13]byte
		b.ReportAllocs()
		b.ResetTimer()
		for i, u := range seq {
			sec, k := i/perSec, i%perSec
			e.TouchAt(idInto(&buf, u), t0.Add(time.Duration(sec+1)*time.Second+time.Duration(k)*(time.Second/perSec)))
		}
	})
	b.Run("1M-each-second", func(b *testing.B) {
		ids := userIDs()
		e := filledEngine(ids)
		rng := rand.New(rand.NewSource(5))
		perms := make([][]int, 4)
		for i := range perms {
			perms[i] = rng.Perm(len(ids))
		}
		var buf [13]byte
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			round, k := i/len(ids), i%len(ids)
			at := t0.Add(time.Duration(round+1)*time.Second + time.Duration(k)*500*time.Nanosecond)
			e.TouchAt(idInto(&buf, int32(perms[round%len(perms)][k])), at)
		}
	})
	for _, dist := range []string{"uniform", "zipf"} {
		b.Run("1M-"+dist, func(b *testing.B) {
			ids := userIDs()
			e := filledEngine(ids)
			seq := sequence(dist, 1<<22, len(ids), 2)
			var buf [13]byte
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				// One resolution (1s) later per op: always a new slot.
				e.TouchAt(idInto(&buf, seq[i&(len(seq)-1)]), t0.Add(time.Duration(i+1)*time.Second))
			}
		})
		// The same moves from GOMAXPROCS goroutines at once: how many a
		// server sustains, rather than what one costs. Each goroutine
		// touches its own users (those whose number it is, modulo the
		// goroutines) at its own times, a second apart, so that every
		// touch is a move, as above.
		b.Run("1M-"+dist+"-parallel", func(b *testing.B) {
			ids := userIDs()
			e := filledEngine(ids)
			procs := runtime.GOMAXPROCS(0)
			seqs := make([][]int32, procs)
			for _, u := range sequence(dist, 1<<22, len(ids), 2) {
				seqs[int(u)%procs] = append(seqs[int(u)%procs], u)
			}
			var worker atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				seq := seqs[int(worker.Add(1)-1)%procs]
				var buf [13]byte
				for i := 0; pb.Next(); i++ {
					e.TouchAt(idInto(&buf, seq[i%len(seq)]), t0.Add(time.Duration(i+1)*time.Second))
				}
			})
			b.StopTimer()
			if moved := e.Stats().Moved; moved < uint64(b.N)*99/100 {
				b.Fatalf("%d of %d touches moved", moved, b.N)
			}
		})
	}
}

// BenchmarkTouchNew: a user the engine has not seen, into an engine that
// already holds a million. "1k-per-second" files a thousand new users per
// index slot (a busy site's sign-ups and new anonymous visitors);
// "all-in-one-second" puts every new user of the run into one slot, about
// 2,000 per filing step, where each lands at a random place among those of
// its step (ordered by a hash); "at-cap" is "1k-per-second" into an engine
// full at WithMaxUsers, where each new user first evicts the least recently
// seen. The map's growth is included: run with -benchtime 1000000x, which
// takes the engine from about 1M to 2M users across exactly one doubling of
// the map, the rate at which a growing map doubles (two entries copied per
// insert); at the cap the map does not grow.
func BenchmarkTouchNew(b *testing.B) {
	for _, tc := range []struct {
		name string
		step time.Duration
		opts []presence.Option
	}{
		{"1k-per-second", time.Millisecond, nil},
		{"all-in-one-second", time.Microsecond, nil},
		{"at-cap", time.Millisecond, []presence.Option{presence.WithMaxUsers(benchUsers)}},
		{"at-cap-256-shards", time.Millisecond, []presence.Option{presence.WithMaxUsers(benchUsers), presence.WithShards(256)}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := filledEngine(userIDs(), tc.opts...)
			fresh := make([]string, b.N)
			for i := range fresh {
				fresh[i] = fmt.Sprintf("new-%09d", i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				e.TouchAt(fresh[i], t0.Add(time.Duration(i)*tc.step))
			}
			b.StopTimer()
			if tc.opts != nil && e.Len() != benchUsers {
				b.Fatalf("%d users held at a cap of %d", e.Len(), benchUsers)
			}
		})
	}
}

// bigEngine holds 10M users spread evenly over the 24 hours before t0, so the
// last 2h24m hold 1M of them.
var (
	bigOnce   sync.Once
	bigEngine *presence.Engine
	bigBytes  float64 // heap bytes per user, after GC
)

const bigUsers = 10_000_000

func big(b *testing.B) *presence.Engine {
	if testing.Short() {
		b.Skip("10M users take a while to build")
	}
	bigOnce.Do(func() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		e := build10M()
		runtime.GC()
		runtime.ReadMemStats(&after)
		// The engine's own copy of each ID is counted in the heap growth;
		// subtract the ID bytes to compare with "bytes per user plus the ID".
		bigBytes = (float64(after.HeapAlloc-before.HeapAlloc) - float64(bigUsers*len("user-00000000"))) / bigUsers
		bigEngine = e
	})
	return bigEngine
}

// build10M returns an engine of bigUsers users with 13-byte IDs, inserted
// in random ID order with times ascending evenly over the 24 hours before
// t0. It keeps none of the IDs it made.
func build10M() *presence.Engine {
	e := presence.New(presence.WithClock(fixedClock()))
	step := 24 * time.Hour / bigUsers
	perm := rand.New(rand.NewSource(3)).Perm(bigUsers)
	var buf [13]byte
	for i, p := range perm {
		e.TouchAt(idInto(&buf, int32(p)), t0.Add(-24*time.Hour+time.Duration(i)*step))
	}
	return e
}

func BenchmarkCountSince10M(b *testing.B) {
	e := big(b)
	since := t0.Add(-24 * time.Hour / 10) // 1M users in the window
	if n := e.CountSince(since); n < 990_000 || n > 1_010_000 {
		b.Fatalf("window holds %d users, want about 1M", n)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		e.CountSince(since)
	}
}

func BenchmarkRecent10M(b *testing.B) {
	e := big(b)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if len(e.Recent(15*time.Minute, 100)) != 100 {
			b.Fatal("short page")
		}
	}
}

// BenchmarkRecentShards: Recent(15m, 100) over 1M users (900,000 of them in
// the window) at shard counts from this machine's default (8) to the
// default of a 64-core (256) and a 256-core machine (1024).
func BenchmarkRecentShards(b *testing.B) {
	atShardCounts(b, func(b *testing.B, e *presence.Engine) {
		for range b.N {
			if len(e.Recent(15*time.Minute, 100)) != 100 {
				b.Fatal("short page")
			}
		}
	})
}

// BenchmarkCountShards: Count(15m) the same way.
func BenchmarkCountShards(b *testing.B) {
	atShardCounts(b, func(b *testing.B, e *presence.Engine) {
		for range b.N {
			if e.Count(15*time.Minute) != 900_000 {
				b.Fatal("wrong count")
			}
		}
	})
}

// atShardCounts runs f, timed, on engines of 1M users at 8, 256 and 1024
// shards.
func atShardCounts(b *testing.B, f func(*testing.B, *presence.Engine)) {
	for _, shards := range []int{8, 256, 1024} {
		b.Run(fmt.Sprint(shards), func(b *testing.B) {
			e := filledEngine(userIDs(), presence.WithShards(shards), presence.WithClock(fixedClock()))
			b.ReportAllocs()
			b.ResetTimer()
			f(b, e)
		})
	}
}

func BenchmarkMemory10M(b *testing.B) {
	big(b)
	for range b.N {
	}
	b.ReportMetric(bigBytes, "bytes/user")
}

// BenchmarkSetMetaUnchanged: SetMeta of the meta a hot user already has,
// as the middleware's meta recording calls it on every request. With
// retention it reads the clock, so that an expired user is unknown to it.
func BenchmarkSetMetaUnchanged(b *testing.B) {
	for _, retention := range []time.Duration{0, 24 * time.Hour} {
		b.Run(fmt.Sprint("retention-", retention), func(b *testing.B) {
			e := presence.New(presence.WithRetention(retention))
			e.Touch("alice")
			e.SetMeta("alice", "203.0.113.7 Mozilla/5.0")
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					e.SetMeta("alice", "203.0.113.7 Mozilla/5.0")
				}
			})
		})
	}
}

// BenchmarkMixed: 1M users, Zipf, from all procs: one Count and one
// Recent(15m, 100) every 1,000 touches, on the real clock.
func BenchmarkMixed(b *testing.B) {
	ids := userIDs()
	// Seen over the last 17 minutes of the real clock, so that touches
	// raise times and move entries as they would on a server.
	e := presence.New()
	now := time.Now()
	for i, id := range ids {
		e.TouchAt(id, now.Add(-time.Duration(len(ids)-i)*time.Millisecond))
	}
	seq := sequence("zipf", 1<<22, len(ids), 4)
	var worker atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(worker.Add(1)) * 7919
		var buf [13]byte
		for pb.Next() {
			if i%1000 == 0 {
				e.Count(15 * time.Minute)
				e.Recent(15*time.Minute, 100)
			} else {
				e.Touch(idInto(&buf, seq[i&(len(seq)-1)]))
			}
			i++
		}
	})
}

// BenchmarkPruneWithinSlot prunes a slot of n users (at a one-hour
// resolution, one shard) in which every other user, seen again after t,
// stays: Prune has to pass over the users it keeps without walking them
// once per batch. Each op prunes a fresh engine; building it is not timed.
func BenchmarkPruneWithinSlot(b *testing.B) {
	ids := userIDs()
	for _, n := range []int{100_000, 400_000} {
		b.Run(fmt.Sprint(n/1000, "k"), func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				b.StopTimer()
				e := presence.New(presence.WithShards(1), presence.WithResolution(time.Hour))
				for i, id := range ids[:n] {
					e.TouchAt(id, t0.Add(time.Duration(i)*time.Microsecond))
				}
				for i := 0; i < n; i += 2 {
					e.TouchAt(ids[i], t0.Add(time.Minute))
				}
				b.StartTimer()
				if got := e.Prune(t0.Add(time.Second)); got != n/2 {
					b.Fatalf("pruned %d, want %d", got, n/2)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/user")
		})
	}
}
