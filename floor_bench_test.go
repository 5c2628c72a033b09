package presence_test

import (
	"hash/maphash"
	"math/rand"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/google/btree"
	"github.com/onlinenow/presence"
	"github.com/puzpuzpuz/xsync/v3"
)

// floorUser mirrors the engine's entry: a user's times, then its ID's bytes
// in the same allocation.
type floorUser struct {
	lastSeen int64
	key      int64
}

func newFloorUser(id string) (*floorUser, string) {
	size := int(unsafe.Sizeof(floorUser{}))
	b := make([]byte, size+len(id))
	copy(b[size:], id)
	return (*floorUser)(unsafe.Pointer(unsafe.SliceData(b))), unsafe.String(&b[size], len(id))
}

type floorItem struct {
	key int64
	u   *floorUser
}

// BenchmarkMoveFloor measures what the prescribed components alone cost for
// the moves of BenchmarkTouchMove/1M-*, with the same users, sequences and
// times: "probe" is an xsync map probe of the ID and a store of its time;
// "index" deletes the user's old item and inserts its new one in one of 8
// google/btree trees (the engine's degree, 16-byte items ordered by one
// int64), as the engine's 8 shards on a 2-core machine, taking the user
// from a slice instead of the map; "probe+index" does both, as a move
// must. Everything else a move does is left out: no lock, no per-slot
// counters, no clock, no tie hash, no checks. An engine built from these
// parts cannot move a user for less than "probe+index".
func BenchmarkMoveFloor(b *testing.B) {
	for _, dist := range []string{"uniform", "zipf"} {
		for _, part := range []string{"probe", "index", "probe+index"} {
			b.Run("1M-"+dist+"/"+part, func(b *testing.B) {
				benchMoveFloor(b, dist, part != "index", part != "probe")
			})
		}
	}
}

func benchMoveFloor(b *testing.B, dist string, probe, index bool) {
	ids := userIDs()
	m := xsync.NewMapOf[string, *floorUser]()
	users := make([]*floorUser, len(ids))
	var trees [8]*btree.BTreeG[floorItem]
	for i := range trees {
		trees[i] = btree.NewG(presence.TreeDegree, func(a, b floorItem) bool { return a.key < b.key })
	}
	seed := maphash.MakeSeed()
	treeOf := func(id string) *btree.BTreeG[floorItem] {
		return trees[maphash.String(seed, id)%uint64(len(trees))]
	}
	for i, id := range ids {
		u, own := newFloorUser(id)
		u.lastSeen = t0.Add(-time.Duration(len(ids)-i) * time.Millisecond).UnixNano()
		u.key = u.lastSeen
		m.Store(own, u)
		users[i] = u
		treeOf(id).ReplaceOrInsert(floorItem{u.key, u})
	}
	seq := sequence(dist, 1<<22, len(ids), 2)
	var buf [13]byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		n := seq[i&(len(seq)-1)]
		id := idInto(&buf, n)
		ns := t0.Add(time.Duration(i+1) * time.Second).UnixNano()
		var u *floorUser
		if probe {
			u, _ = m.Load(id)
			u.lastSeen = ns
		} else {
			u = users[n]
		}
		if index {
			t := treeOf(id)
			t.Delete(floorItem{key: u.key})
			u.key = ns
			t.ReplaceOrInsert(floorItem{ns, u})
		}
	}
	b.StopTimer()
	held := 0
	for _, t := range trees {
		held += t.Len()
	}
	if held != len(ids) { // a delete missed its item
		b.Fatalf("the trees hold %d items for %d users", held, len(ids))
	}
}

// BenchmarkReadFloor measures what the prescribed components alone cost for
// the read of BenchmarkSnapshotRead10M/open, with the same users and times:
// 10M records, already decoded and split between GOMAXPROCS goroutines as
// Open's merge splits them, each goroutine storing its users in one xsync
// map sized for 10M (as Open sizes it) and inserting them, oldest first,
// into its share of 8 google/btree trees. "store" stores each user;
// "probe-then-store" first probes the map for 16 users back to back, as the
// merge does. Left out: reading and checking the file, locks, per-slot
// counters, meta, checks. An engine built from these parts cannot read a
// snapshot faster than the faster of the two.
func BenchmarkReadFloor(b *testing.B) {
	if testing.Short() {
		b.Skip("10M users take a while to build")
	}
	// Pointer-free records, so that the collector, which the merge keeps
	// busy, does not also scan the input.
	type rec struct {
		ns int64
		at int // the ID's offset in ids
	}
	workers := runtime.GOMAXPROCS(0)
	const trees = 8
	seed := maphash.MakeSeed()
	shards := make([][]rec, workers)
	step := 24 * time.Hour / bigUsers
	perm := rand.New(rand.NewSource(3)).Perm(bigUsers)
	ids := make([]byte, 0, bigUsers*13)
	var buf [13]byte
	for i, p := range perm {
		ids = append(ids, idInto(&buf, int32(p))...)
		at := len(ids) - 13
		w := maphash.Bytes(seed, ids[at:]) % trees % uint64(workers)
		shards[w] = append(shards[w], rec{t0.Add(-24*time.Hour + time.Duration(i)*step).UnixNano(), at})
	}
	for _, probe := range []bool{false, true} {
		name := "store"
		if probe {
			name = "probe-then-store"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				m := xsync.NewMapOf[string, *floorUser](xsync.WithPresize(bigUsers))
				var wg sync.WaitGroup
				var held atomic.Int64
				for w := range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						var ts [trees]*btree.BTreeG[floorItem]
						for i := range ts {
							ts[i] = btree.NewG(presence.TreeDegree, func(a, b floorItem) bool { return a.key < b.key })
						}
						defer func() {
							for _, t := range ts {
								held.Add(int64(t.Len()))
							}
						}()
						recs := shards[w]
						for len(recs) > 0 {
							batch := recs[:min(16, len(recs))]
							recs = recs[len(batch):]
							if probe {
								for _, r := range batch {
									m.Load(unsafe.String(&ids[r.at], 13))
								}
							}
							for _, r := range batch {
								id := unsafe.String(&ids[r.at], 13)
								u, own := newFloorUser(id)
								u.lastSeen, u.key = r.ns, r.ns
								m.Store(own, u)
								ts[maphash.String(seed, id)%trees].ReplaceOrInsert(floorItem{r.ns, u})
							}
						}
					}()
				}
				wg.Wait()
				if held.Load() != bigUsers || m.Size() != bigUsers {
					b.Fatalf("%d items and %d map entries for %d users", held.Load(), m.Size(), bigUsers)
				}
			}
			b.ReportMetric(float64(bigUsers)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
