package presence

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"time"
	"unsafe"
)

// ItemSize is the size of one index item; TestItemLayout pins it.
const ItemSize = unsafe.Sizeof(item{})

// TreeDegree is the degree of the engine's B-trees, for the floor
// benchmarks, which build their trees alike.
const TreeDegree = treeDegree

// RingSlots is how many slots the counters of an engine without retention
// hold: the oldest is RingSlots-1 behind the newest.
const RingSlots = maxHorizon

// CompareFiled orders two users in one slot as the engine's index does,
// given when each was filed under it: -1, 0 or +1. The reference model
// keeps filing times of its own.
func CompareFiled(e *Engine, aFiled int64, a string, bFiled int64, b string) int {
	ia := item{key: e.lay.key(aFiled, a), ent: newEntry(a)}
	ib := item{key: e.lay.key(bFiled, b), ent: newEntry(b)}
	switch {
	case itemLess(ia, ib):
		return -1
	case itemLess(ib, ia):
		return 1
	}
	return 0
}

// CompareHeld orders two users the engine holds as its index does, where
// the model cannot know when each was filed (concurrent touches race).
func CompareHeld(e *Engine, a, b string) int {
	ea, _ := e.users.Load(a)
	eb, _ := e.users.Load(b)
	return compareFiled(ea, eb)
}

// CompareHeldIn is CompareHeld for two members of a room.
func CompareHeldIn(e *Engine, room, a, b string) int {
	ea, _ := e.members.Load(member{room, a})
	eb, _ := e.members.Load(member{room, b})
	return compareFiled(ea, eb)
}

func compareFiled(a, b *entry) int {
	switch ia, ib := itemOf(a), itemOf(b); {
	case itemLess(ia, ib):
		return -1
	case itemLess(ib, ia):
		return 1
	}
	return 0
}

// RoomCounted reports whether a room keeps slot counters.
func RoomCounted(e *Engine, room string) bool {
	s, ok := e.roomMap.Load(room)
	return ok && s.idx.counted
}

// MapCapacity is how many users the engine's map holds before it grows.
func MapCapacity(e *Engine) int { return e.users.Stats().Capacity }

// CheckInvariants checks, on a quiet engine, that the map, the index and the
// counters agree: every user is in the map and in its shard's tree once,
// filed under the slot its entry says, the counters and the user count add
// up, the shards' oldest keys (with a cap) are their trees', and no meta
// outlives its user.
func CheckInvariants(e *Engine) error {
	inTrees := 0
	for i, s := range e.shards {
		s.mu.RLock()
		var err error
		s.idx.tree.Ascend(func(it item) bool {
			id := it.id()
			if e.shardOf(id) != s {
				err = fmt.Errorf("%q is in shard %d, not its own", id, i)
			} else if ent, ok := e.users.Load(id); !ok || ent != it.ent {
				err = fmt.Errorf("%q is indexed but not mapped to its entry", id)
			} else if key := it.ent.filed.Load(); key != it.key {
				err = fmt.Errorf("%q is filed at key %x but its entry says %x", id, it.key, key)
			} else if want := slotOf(it.ent.lastSeen.Load(), e.lay.res); want != e.lay.slot(it) {
				err = fmt.Errorf("%q is filed at slot %d, its last-seen is in slot %d", id, e.lay.slot(it), want)
			}
			return err == nil
		})
		n := s.idx.tree.Len()
		if c := s.idx.counts.old + s.idx.counts.inRing + s.idx.counts.ahead.n; err == nil && c != n {
			err = fmt.Errorf("shard %d counts %d users, its tree holds %d", i, c, n)
		}
		if err == nil {
			err = checkCounts(e, s)
		}
		if h := s.held.Load(); err == nil && h != int64(n) {
			err = fmt.Errorf("shard %d holds %d users by its count, %d by its tree", i, h, n)
		}
		if s.oldest != nil && err == nil {
			want := int64(emptyKey)
			if first, ok := s.idx.tree.Min(); ok {
				want = first.key
			}
			if got := s.oldest.Load(); got != want {
				err = fmt.Errorf("shard %d notes its oldest key as %x, its tree's is %x", i, got, want)
			}
		}
		s.mu.RUnlock()
		if err != nil {
			return err
		}
		inTrees += n
	}
	m := e.users.Size()
	if m != inTrees || m != e.held() {
		return fmt.Errorf("map holds %d users, trees %d, count %d", m, inTrees, e.held())
	}
	var orphan error
	e.metas.Range(func(id, _ string) bool {
		if _, ok := e.users.Load(id); !ok {
			orphan = fmt.Errorf("meta for %q, whom the engine does not hold", id)
		}
		return orphan == nil
	})
	if orphan != nil {
		return orphan
	}
	want := int64(0) // without a cap nothing reserves
	if e.maxUsers > 0 {
		want = int64(m) // a quiet engine has no insert in flight
	}
	if e.n.Load() != want {
		return fmt.Errorf("%d reservations for %d users at a cap of %d", e.n.Load(), m, e.maxUsers)
	}
	return checkRooms(e)
}

// checkRooms checks, on a quiet engine, that every room is a live shard
// holding members filed as their entries say, that the map of members,
// the users' room lists and the room index agree with the rooms, and that
// every member is a user.
func checkRooms(e *Engine) error {
	var err error
	members := 0
	e.roomMap.Range(func(name string, s *shard) bool {
		s.mu.RLock()
		defer s.mu.RUnlock()
		n := s.idx.tree.Len()
		members += n
		switch {
		case s.room != name || s.dead:
			err = fmt.Errorf("room %q: shard of %q, dead %v", name, s.room, s.dead)
		case n == 0 || s.held.Load() != int64(n):
			err = fmt.Errorf("room %q holds %d members, counts %d", name, n, s.held.Load())
		case s.idx.counted != (n >= roomCountAt) && !s.idx.counted:
			err = fmt.Errorf("room %q of %d members keeps no counters", name, n)
		}
		if err == nil && s.active.filed.Load() <= deadKey {
			err = fmt.Errorf("room %q is not in the room index", name)
		}
		if err == nil && s.idx.counted {
			if c := s.idx.counts.old + s.idx.counts.inRing + s.idx.counts.ahead.n; c != n {
				err = fmt.Errorf("room %q counts %d members, holds %d", name, c, n)
			} else {
				err = checkCounts(e, s)
			}
		}
		s.idx.tree.Ascend(func(it item) bool {
			id := it.id()
			if ent, ok := e.members.Load(member{name, id}); !ok || ent != it.ent {
				err = fmt.Errorf("%q is in room %q but not mapped to its entry", id, name)
			} else if it.ent.filed.Load() != it.key || slotOf(it.ent.lastSeen.Load(), e.lay.res) != e.lay.slot(it) {
				err = fmt.Errorf("%q is misfiled in room %q", id, name)
			} else if _, ok := e.users.Load(id); !ok {
				err = fmt.Errorf("%q is in room %q but not a user", id, name)
			} else if !slices.Contains(e.roomsOf(id), name) {
				err = fmt.Errorf("%q is in room %q, its list says %q", id, name, e.roomsOf(id))
			}
			return err == nil
		})
		return err == nil
	})
	if err != nil {
		return err
	}
	if m := e.members.Size(); m != members {
		return fmt.Errorf("%d memberships mapped, %d in rooms", m, members)
	}
	listed := 0
	e.userRooms.Range(func(id string, l *roomList) bool {
		listed += len(l.names)
		if len(l.names) == 0 || l.dead {
			err = fmt.Errorf("%q has an empty or dead room list", id)
		}
		if e.perUser > 0 && len(l.names) > e.perUser {
			err = fmt.Errorf("%q is in %d rooms, over the cap of %d", id, len(l.names), e.perUser)
		}
		return err == nil
	})
	if err == nil && listed != members {
		err = fmt.Errorf("room lists name %d memberships, rooms hold %d", listed, members)
	}
	if err == nil {
		err = checkRoomIndex(e)
	}
	return err
}

// checkRoomIndex checks that the room index files each live room once, as
// its activity entry says, at the slot of its activity, and nothing else.
func checkRoomIndex(e *Engine) error {
	ri := &e.roomIdx
	ri.mu.Lock()
	defer ri.mu.Unlock()
	var err error
	n := 0
	ri.idx.tree.Ascend(func(it item) bool {
		n++
		name := it.id()
		s, ok := e.roomMap.Load(name)
		switch {
		case !ok || s.active != it.ent:
			err = fmt.Errorf("the room index files %q, which is not a live room", name)
		case it.ent.filed.Load() != it.key:
			err = fmt.Errorf("room %q is indexed at %x, its entry says %x", name, it.key, it.ent.filed.Load())
		case slotOf(it.ent.lastSeen.Load(), e.lay.res) != e.lay.slot(it):
			err = fmt.Errorf("room %q is indexed in the wrong slot", name)
		}
		return err == nil
	})
	if err == nil && n != e.roomMap.Size() {
		err = fmt.Errorf("the room index holds %d rooms, %d are live", n, e.roomMap.Size())
	}
	return err
}

// CountWalks reports whether counting the users seen since t walks some
// shard's tree, its counters' ring not reaching back to t.
func CountWalks(e *Engine, t time.Time) bool {
	from := slotOf(t.UnixNano(), e.lay.res)
	for _, s := range e.shards {
		s.mu.RLock()
		_, complete := s.idx.counts.since(from)
		s.mu.RUnlock()
		if !complete {
			return true
		}
	}
	return false
}

// UsersAhead is how many users the shards count beyond their rings' heads.
func UsersAhead(e *Engine) int {
	n := 0
	for _, s := range e.shards {
		s.mu.RLock()
		n += s.idx.counts.ahead.n
		s.mu.RUnlock()
	}
	return n
}

// CounterBlocks is how many blocks of per-slot counters the shards hold.
func CounterBlocks(e *Engine) int {
	n := 0
	for _, s := range e.shards {
		s.mu.RLock()
		for _, b := range s.idx.counts.per {
			if b != nil {
				n++
			}
		}
		s.mu.RUnlock()
	}
	return n
}

// checkCounts checks a shard's counters slot by slot against its tree. It
// reads the sums over 4096 and 64 slots whole, and the per-slot counters
// where a sum or the tree says there are users, so that fuzzing can call it
// after every operation.
func checkCounts(e *Engine, s *shard) error {
	c := &s.idx.counts
	if !c.started {
		return nil
	}
	mask := c.horizon - 1
	ring, ahead := map[int64]int32{}, map[int64]int{}
	old := 0
	s.idx.tree.Ascend(func(it item) bool {
		switch slot := e.lay.slot(it); {
		case slot > c.head:
			ahead[slot]++
		case slot <= c.head-c.horizon:
			old++
		default:
			ring[slot&mask]++
		}
		return true
	})
	if old != c.old {
		return fmt.Errorf("%d users before the ring, counted %d", old, c.old)
	}
	inRing := 0
	for b, v := range c.by4096 {
		var sum int32
		for _, w := range c.by64[b*64 : b*64+64] {
			sum += w
		}
		if sum != v {
			return fmt.Errorf("ring block %d: by64 adds up to %d, by4096 says %d", b, sum, v)
		}
		inRing += int(v)
	}
	for b, v := range c.by64 {
		var want int32
		for p := int64(b * 64); p < int64(b*64+64); p++ {
			want += ring[p]
		}
		if v == 0 && want == 0 {
			continue
		}
		var sum int32
		for p := b * 64; p < b*64+64; p++ {
			w := c.at(p)
			if w != ring[int64(p)] {
				return fmt.Errorf("ring position %d: %d users, counted %d", p, ring[int64(p)], w)
			}
			sum += w
		}
		if sum != v {
			return fmt.Errorf("ring positions %d..%d: %d users, by64 says %d", b*64, b*64+63, sum, v)
		}
	}
	for b, blk := range c.per {
		if blk == nil && c.by4096[b] != 0 || blk != nil && c.by4096[b] == 0 && b != c.headBlock() {
			return fmt.Errorf("ring block %d: counters allocated %v, %d users", b, blk != nil, c.by4096[b])
		}
	}
	if inRing != c.inRing || inRing != s.idx.tree.Len()-old-c.ahead.n {
		return fmt.Errorf("%d users in the ring by its sums, counted %d", inRing, c.inRing)
	}
	counted := map[int64]int{}
	if c.ahead.tree != nil {
		c.ahead.tree.Ascend(func(sc slotCount) bool {
			counted[sc.slot] = sc.n
			return true
		})
	}
	if !maps.Equal(ahead, counted) {
		return fmt.Errorf("users beyond head by slot %v, counted %v (%d)", ahead, counted, c.ahead.n)
	}
	return nil
}

// EncodeSnapshot writes a snapshot of recs in the given order, as WriteTo
// writes its records, so that tests can make files WriteTo would not.
func EncodeSnapshot(w io.Writer, recs []Activity) (int64, error) {
	sw := newSnapWriter(w)
	for _, a := range recs {
		sw.record(a.LastSeen.UnixNano(), a.ID, a.Meta, nil)
	}
	return sw.finish()
}

// SnapshotTimes decodes a snapshot and returns the times of its records in
// file order.
func SnapshotTimes(r io.Reader) (times []int64, err error) {
	f, _, err := decodeSnapshot(r)
	if err != nil {
		return nil, err
	}
	f.each(math.MinInt64, 1, func(rec snapRecord) { times = append(times, rec.ns) })
	return times, nil
}

// Restore loads a snapshot into a new engine as Open does, without a file
// or a saver.
func Restore(r io.Reader, opts ...Option) (*Engine, error) {
	e := New(opts...)
	_, err := e.readFrom(r, true)
	return e, err
}

// SweepByHand readies e's events without the sweeper goroutine, before
// any subscription or hold, so that a benchmark times each sweep itself
// with Sweep.
func SweepByHand(e *Engine) {
	e.startOnce.Do(func() {
		if e.startEdges() {
			close(e.done)
		}
	})
}

// Sweep sweeps e once, as a tick of its sweeper does.
func Sweep(e *Engine) { e.sweep() }
