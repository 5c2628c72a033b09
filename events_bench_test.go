package presence_test

import (
	"fmt"
	"math/rand"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/google/btree"
	"github.com/onlinenow/presence"
)

// drainAll receives sub's events until it closes, counting them.
func drainAll(sub *presence.Subscription) (n *atomic.Int64, done <-chan struct{}) {
	n = new(atomic.Int64)
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		for range sub.Events() {
			n.Add(1)
		}
	}()
	return n, ch
}

// BenchmarkTouchSubscribed: Touch of online users with no subscriber and
// with one that drains its events, side by side. "1M-uniform" and
// "1M-zipf" are BenchmarkTouchSameSlot's (the hot path: a CAS, no slot
// change); "1M-each-second" is BenchmarkTouchMove's (every touch moves the
// user's index item), with the clock at the touches' second and an online
// window of an hour, so every user stays online and no touch makes an
// event: what a subscription costs the touches that do not change
// presence, which are nearly all of them. "1M-comeback" touches users who
// are offline, so every touch publishes an Online event: what an event
// costs the toucher.
//
// "scoped=100k" opens 100,000 subscriptions, each scoped to a room of its
// own that no touch enters: the target is a touch costing no more than
// 1.1x one with none.
func BenchmarkTouchSubscribed(b *testing.B) {
	b.Run("1M-zipf/scoped=100k", func(b *testing.B) {
		ids := userIDs()
		e := presence.New(presence.WithClock(fixedClock()))
		defer e.Close()
		for _, id := range ids {
			e.TouchAt(id, t0)
		}
		for i := range 100_000 {
			e.Subscribe(1, presence.InRooms(fmt.Sprint("room-", i)))
		}
		touchSameSlot(b, e, sequence("zipf", 1<<22, len(ids), 1))
	})
	for _, subs := range []int{0, 1} {
		for _, dist := range []string{"uniform", "zipf"} {
			b.Run(fmt.Sprintf("1M-%s/subscribers=%d", dist, subs), func(b *testing.B) {
				ids := userIDs()
				e := presence.New(presence.WithClock(fixedClock()))
				defer e.Close()
				for _, id := range ids {
					e.TouchAt(id, t0)
				}
				if subs > 0 {
					drainAll(e.Subscribe(0))
				}
				seq := sequence(dist, 1<<22, len(ids), 1)
				touchSameSlot(b, e, seq)
			})
		}
		b.Run(fmt.Sprintf("1M-each-second/subscribers=%d", subs), func(b *testing.B) {
			ids := userIDs()
			var now atomic.Int64
			now.Store(t0.UnixNano())
			e := presence.New(presence.WithOnlineWindow(time.Hour),
				presence.WithClock(func() time.Time { return time.Unix(0, now.Load()) }))
			defer e.Close()
			for i, id := range ids {
				e.TouchAt(id, t0.Add(-time.Duration(len(ids)-i)*time.Millisecond))
			}
			var events *atomic.Int64
			if subs > 0 {
				events, _ = drainAll(e.Subscribe(0))
			}
			perms := [][]int{permutation(len(ids), 5), permutation(len(ids), 6)}
			var buf [13]byte
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				round, k := i/len(ids), i%len(ids)
				at := t0.Add(time.Duration(round+1)*time.Second + time.Duration(k)*500*time.Nanosecond)
				if k == 0 {
					now.Store(at.UnixNano())
				}
				e.TouchAt(idInto(&buf, int32(perms[round%len(perms)][k])), at)
			}
			b.StopTimer()
			if events != nil && events.Load() != 0 {
				b.Fatalf("%d events from touches of online users", events.Load())
			}
		})
		b.Run(fmt.Sprintf("1M-comeback/subscribers=%d", subs), func(b *testing.B) {
			// Users last seen a day before the clock: each touch brings one
			// back online. A fresh user per op, so the run is limited to
			// the 1M users (use -benchtime 1000000x or less).
			if b.N > benchUsers {
				b.Skip("run with -benchtime 1000000x or less")
			}
			ids := userIDs()
			e := presence.New(presence.WithClock(fixedClock()))
			defer e.Close()
			for _, id := range ids {
				e.TouchAt(id, t0.Add(-24*time.Hour))
			}
			var events *atomic.Int64
			var drained <-chan struct{}
			var sub *presence.Subscription
			if subs > 0 {
				sub = e.Subscribe(1 << 16)
				events, drained = drainAll(sub)
			}
			perm := permutation(len(ids), 7)
			var buf [13]byte
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				e.TouchAt(idInto(&buf, int32(perm[i])), t0)
			}
			b.StopTimer()
			if sub != nil {
				e.Close()
				<-drained
				if got := events.Load() + int64(sub.Dropped()); got < int64(b.N) {
					b.Fatalf("%d events received or dropped for %d comebacks", got, b.N)
				}
				b.ReportMetric(float64(sub.Dropped()), "dropped")
			}
		})
	}
}

// permutation returns a random order of [0, n).
func permutation(n int, seed int64) []int { return rand.New(rand.NewSource(seed)).Perm(n) }

// BenchmarkSweep: 1M users, seen a millisecond apart within the online
// window, all pass its edge at once, and one sweep publishes their 1M
// Offline events to a subscriber that drains them; ns/user is the sweep's
// time per user that went offline. With a buffer of 1M, the sweep never
// waits for the subscriber: the sweep's own cost. With 4096, it waits
// whenever the subscriber is behind (see awaitRoom), so its time is that
// of the slower of the two, and dropped/op shows whether the subscriber
// received everything. "btree-delete" is the floor it is
// held against: deleting each of those users' items, in the order the
// sweep passes them, from 8 google/btree trees of the engine's degree
// holding the same 1M items (as the engine's 8 shards on 2 cores). Run
// with -benchtime 3x or so: each op is a whole million.
func BenchmarkSweep(b *testing.B) {
	ids := userIDs()
	for _, buffer := range []int{1 << 20, 1 << 12} {
		b.Run(fmt.Sprintf("1M-offline/buffer=%d", buffer), func(b *testing.B) { benchSweep(b, ids, buffer) })
	}
	b.Run("btree-delete", func(b *testing.B) {
		var took time.Duration
		for range b.N {
			trees, items := floorTrees(ids)
			start := time.Now()
			for s, t := range trees {
				for k := s; k < len(items); k += len(trees) {
					t.Delete(items[k])
				}
			}
			took += time.Since(start)
		}
		b.ReportMetric(float64(took.Nanoseconds())/float64(b.N*len(ids)), "ns/user")
	})
	b.Run("walk+send", func(b *testing.B) {
		// The parts a sweep cannot do without: walk the items in order and
		// send an event for each on a channel (buffer 4096) that another
		// goroutine drains.
		var took time.Duration
		for range b.N {
			trees, _ := floorTrees(ids)
			ch := make(chan presence.Event, 1<<12)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for range ch {
				}
			}()
			start := time.Now()
			seq := uint64(0)
			for _, t := range trees {
				t.Ascend(func(it floorItem) bool {
					seq++
					ch <- presence.Event{Kind: presence.Offline, ID: floorID(it.u), At: time.Unix(0, it.key), Seq: seq}
					return true
				})
			}
			close(ch)
			<-done
			took += time.Since(start)
		}
		b.ReportMetric(float64(took.Nanoseconds())/float64(b.N*len(ids)), "ns/user")
	})
}

// floorTrees files ids in 8 google/btree trees of the engine's degree (as
// its 8 shards on 2 cores) by their order in ids, with items of 16 bytes,
// as the engine's, each user's ID after its times (its length in
// lastSeen, for floorID).
func floorTrees(ids []string) ([]*btree.BTreeG[floorItem], []floorItem) {
	trees := make([]*btree.BTreeG[floorItem], 8)
	for s := range trees {
		trees[s] = btree.NewG(presence.TreeDegree, func(a, b floorItem) bool { return a.key < b.key })
	}
	items := make([]floorItem, len(ids))
	for k, id := range ids {
		u, _ := newFloorUser(id)
		u.lastSeen = int64(len(id))
		items[k] = floorItem{key: int64(k), u: u}
		trees[k%len(trees)].ReplaceOrInsert(items[k])
	}
	return trees, items
}

// floorID is the ID of a user of floorTrees.
func floorID(u *floorUser) string {
	return unsafe.String((*byte)(unsafe.Add(unsafe.Pointer(u), unsafe.Sizeof(*u))), int(u.lastSeen))
}

// sweptEngine returns an engine with an online window of an hour, swept
// by hand (presence.Sweep), and the clock it reads.
func sweptEngine(b *testing.B) (*presence.Engine, *atomic.Int64) {
	now := new(atomic.Int64)
	now.Store(t0.UnixNano())
	e := presence.New(presence.WithClock(func() time.Time { return time.Unix(0, now.Load()) }),
		presence.WithOnlineWindow(time.Hour))
	b.Cleanup(func() { e.Close() })
	presence.SweepByHand(e)
	return e, now
}

// comeBack touches ids a millisecond apart from the base time of round
// (rounds are 3 hours apart, past the window), the clock at the last, and
// returns the base.
func comeBack(e *presence.Engine, now *atomic.Int64, ids []string, round int) time.Time {
	base := t0.Add(time.Duration(round) * 3 * time.Hour)
	now.Store(base.Add(time.Duration(len(ids)) * time.Millisecond).UnixNano())
	for k, id := range ids {
		e.TouchAt(id, base.Add(time.Duration(k)*time.Millisecond))
	}
	return base
}

func benchSweep(b *testing.B, ids []string, buffer int) {
	e, now := sweptEngine(b)
	sub := e.Subscribe(buffer)
	events, _ := drainAll(sub)
	var swept time.Duration
	var lost uint64 // in the sweeps; the touches before them may lose some too
	for i := range b.N {
		// Everyone comes back (Online events, untimed), then the
		// clock passes the window and one sweep finds them offline.
		base := comeBack(e, now, ids, i)
		waitCount(events, sub, int64(len(ids))*int64(2*i+1))
		now.Store(base.Add(2 * time.Hour).UnixNano())
		dropped := sub.Dropped()
		start := time.Now()
		presence.Sweep(e)
		swept += time.Since(start)
		lost += sub.Dropped() - dropped
	}
	waitCount(events, sub, int64(len(ids))*int64(2*b.N))
	b.ReportMetric(float64(swept.Nanoseconds())/float64(b.N*len(ids)), "ns/user")
	b.ReportMetric(float64(lost)/float64(b.N), "dropped/op")
}

// waitCount waits until sub's drainer, whose count is n, has received or
// lost want events.
func waitCount(n *atomic.Int64, sub *presence.Subscription, want int64) {
	for n.Load()+int64(sub.Dropped()) < want {
		runtime.Gosched()
	}
}

// BenchmarkOfflineBurst: the touches of other goroutines while 1M users
// go offline in one sweep (1M Offline events to a subscriber draining
// them), against the same touches with the engine quiet: p50, p99.9 and
// worst latency of a Touch of one of 1M online users (Zipf), each timed
// alone. "stalled" is the burst with a subscriber (buffer 4096) that
// never reads: the sweep waits for it half a tick, then drops, and the
// live heap after the sweep (heap-growth-B) does not grow with the
// events it misses. Each op is one burst of 1M; run with -benchtime 3x.
func BenchmarkOfflineBurst(b *testing.B) {
	for _, mode := range []string{"quiet", "burst", "stalled"} {
		b.Run(mode, func(b *testing.B) {
			benchOfflineBurst(b, mode)
		})
	}
}

// activeBase numbers the active users of benchOfflineBurst, after the
// others.
const activeBase = 50_000_000

func benchOfflineBurst(b *testing.B, mode string) {
	ids := userIDs()
	// Two populations in one engine: 1M that go offline, and 1M others
	// (numbered from activeBase), seen now, that the touches hit.
	e, now := sweptEngine(b)
	active := make([]string, len(ids))
	for k := range active {
		active[k] = fmt.Sprintf("user-%08d", activeBase+k)
	}
	var events *atomic.Int64
	sub := e.Subscribe(1 << 12)
	if mode == "burst" {
		events, _ = drainAll(sub)
	}
	seq := sequence("zipf", 1<<22, len(ids), 3)
	lat := make([]time.Duration, 0, 4<<20)
	var heap uint64
	var dropped uint64
	b.StopTimer()
	for i := range b.N {
		base := comeBack(e, now, ids, i)
		at := base.Add(2 * time.Hour)
		for _, id := range active {
			e.TouchAt(id, at)
		}
		if events != nil {
			// Each round: 1M back online and, in the sweep, offline; the
			// first also brings the active users online.
			waitCount(events, sub, int64(2*len(ids))*int64(i+1))
		}
		now.Store(at.UnixNano())
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		dropped0 := sub.Dropped()

		b.StartTimer()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			if mode != "quiet" {
				presence.Sweep(e)
			} else {
				<-time.After(100 * time.Millisecond) // about a sweep's time
			}
			close(stop)
		}()
		var buf [13]byte
		for j := 0; ; j++ {
			select {
			case <-stop:
			default:
				u := seq[(i<<20+j)&(len(seq)-1)]
				id := idInto(&buf, activeBase+u)
				start := time.Now()
				e.TouchAt(id, at)
				lat = append(lat, time.Since(start))
				continue
			}
			break
		}
		wg.Wait()
		b.StopTimer()
		runtime.GC() // what stays: the stalled subscriber's buffer, not what it missed
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		heap = max(heap, after.HeapAlloc-min(after.HeapAlloc, before.HeapAlloc))
		dropped += sub.Dropped() - dropped0
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) }
	b.ReportMetric(q(0.5), "p50-ns")
	b.ReportMetric(q(0.999), "p99.9-ns")
	b.ReportMetric(q(1), "max-ns")
	b.ReportMetric(float64(len(lat))/float64(b.N), "touches/op")
	b.ReportMetric(float64(heap), "heap-growth-B")
	if mode != "quiet" {
		b.ReportMetric(float64(dropped)/float64(b.N), "dropped/op")
	}
}

// BenchmarkScopedPublish publishes Joins, each to one of subs rooms in
// turn, to a hub with a subscription scoped to each room: the cost of an
// event must not grow with the subscriptions it does not match.
// "woken/op" counts the subscriptions that received (or dropped) an event,
// per event: one.
func BenchmarkScopedPublish(b *testing.B) {
	for _, n := range []int{1, 100_000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			var h presence.Hub
			defer h.Close()
			rooms := make([]string, n)
			subs := make([]*presence.Subscription, n)
			for i := range n {
				rooms[i] = fmt.Sprint("room-", i)
				subs[i] = h.Subscribe(1, presence.InRooms(rooms[i]))
			}
			at := time.Unix(0, 0)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				h.Publish(presence.Event{Kind: presence.Join, ID: "u", Room: rooms[i%n], At: at})
			}
			b.StopTimer()
			woken := 0
			for _, s := range subs {
				woken += len(s.Events()) + int(s.Dropped())
			}
			b.ReportMetric(float64(woken)/float64(b.N), "woken/op")
		})
	}
}
