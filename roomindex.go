package presence

import (
	"math"
	"sync"
	"time"
)

// roomIndex orders the rooms by their latest activity: a member joining,
// entering a new slot or being released. It keeps WithMaxRooms, ending the
// least recently active room, and lists the rooms active in a window for
// Engine.Rooms. A room's activity is an entry of its own (shard.active,
// whose ID is the room's name), raised lock-free as a user's is; only when
// it enters a new slot (once per room per resolution) does the index take
// its lock. Locks come after every room's.
type roomIndex struct {
	mu  sync.Mutex
	idx index // items of the rooms' activity entries; not counted
	max int   // WithMaxRooms; 0: no cap
}

// activate records activity in room s at ns: the room's latest activity
// rises to ns's slot, and its item moves if its slot changed. A room that left the
// index (evicted for the cap, while a member came) is filed anew, which may
// end another room. Called outside every room's lock.
func (e *Engine) activate(s *shard, ns int64, now *reading) {
	ent := s.active
	// Within the slot the room is filed in, nothing changes that a query
	// or the cap reads: a load, where a compare-and-swap would pull the
	// room's line from core to core at every member's move.
	f := ent.filed.Load()
	if f > deadKey && ns < e.lay.end(f) {
		return
	}
	// An evicted room is filed anew even at a time no newer than its last:
	// a member came, so endRoom must leave it.
	if !e.bump(ent, ns) && f != removedKey {
		return
	}
	ri := &e.roomIdx
	ri.mu.Lock()
	var ended string
	switch old := itemOf(ent); {
	case old.key == deadKey:
		// Ended meanwhile: its members went to a room of the same name.
	case old.key == removedKey:
		if ri.max > 0 && ri.idx.len() >= ri.max {
			if victim, ok := ri.idx.min(); ok && victim.ent.lastSeen.Load() != heldNs {
				ri.unfile(victim)
				ended = victim.id()
			}
		}
		ri.file(ent, len(s.room), now)
	case slotOf(ent.lastSeen.Load(), e.lay.res) != e.lay.slot(old):
		ri.idx.remove(old)
		ri.file(ent, len(s.room), now)
	}
	ri.mu.Unlock()
	if ended != "" {
		e.endRoom(ended)
	}
}

// file indexes ent, an n-byte room name, at its last-seen time. Called
// with ri.mu held.
func (ri *roomIndex) file(ent *entry, n int, now *reading) {
	it := item{key: ri.idx.lay.key(ent.lastSeen.Load(), ent.id(n)), ent: ent}
	ri.idx.insert(it, now)
	ent.filed.Store(it.key)
}

// unfile takes a room's item out and marks it removed. Called with ri.mu
// held.
func (ri *roomIndex) unfile(it item) {
	ri.idx.remove(it)
	it.ent.filed.Store(removedKey)
}

// forget takes a room that ended out of the index for good. Called with
// the room's lock held.
func (ri *roomIndex) forget(ent *entry) {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	if it := itemOf(ent); it.key != removedKey && it.key != deadKey {
		ri.idx.remove(it)
	}
	ent.filed.Store(deadKey)
}

// deadKey is the filed key of an ended room's activity: removedKey is an
// evicted one's, which a member's activity files anew.
const deadKey = removedKey + 1

// newActivity returns the activity entry of a room called name, not yet
// filed, which the first activity files.
func newActivity(name string) *entry {
	ent := newEntry(name)
	ent.lastSeen.Store(math.MinInt64)
	ent.filed.Store(removedKey)
	return ent
}

// holdRoom files room s as held (active now, and in every window) until the
// returned release, which files it as active at the release. Holds count:
// the room is held while any is.
func (e *Engine) holdRoom(s *shard, now *reading) (release func()) {
	ri := &e.roomIdx
	ent := s.active
	e.activate(s, now.ns(), now)
	ri.mu.Lock()
	if s.activeHolds++; s.activeHolds == 1 && itemOf(ent).key > deadKey {
		ri.idx.remove(itemOf(ent))
		ent.lastSeen.Store(heldNs)
		ri.file(ent, len(s.room), now)
	}
	ri.mu.Unlock()
	return func() {
		now := e.clock(unread)
		ri.mu.Lock()
		if s.activeHolds--; s.activeHolds == 0 && ent.lastSeen.Load() == heldNs {
			ent.lastSeen.Store(now.ns())
			if it := itemOf(ent); it.key > deadKey {
				ri.idx.remove(it)
				ri.file(ent, len(s.room), &now)
			}
		}
		ri.mu.Unlock()
	}
}

// activeSince returns the names of the rooms active at slot from or newer,
// most recently active first, reading the index a page at a time.
func (ri *roomIndex) activeSince(from int64) []string {
	var names []string
	var buf []item
	w := window{from: from, limit: pageBatch}
	for {
		ri.mu.Lock()
		buf = ri.idx.collect(w, buf[:0])
		for _, it := range buf {
			names = append(names, it.id())
		}
		ri.mu.Unlock()
		if len(buf) < pageBatch {
			return names
		}
		w.after, w.has = buf[len(buf)-1], true
	}
}

// endRoom removes the room called name and all its memberships, after the
// room index evicted it for WithMaxRooms, unless it became active again.
func (e *Engine) endRoom(name string) {
	s, ok := e.roomMap.Load(name)
	if !ok || s.active.filed.Load() != removedKey {
		return
	}
	if s.clear() {
		e.endedRooms.Add(1)
	}
}

// Rooms returns the rooms with members seen within window of now, busiest
// first (ties by name), at most limit of them (limit <= 0: all). It counts
// every room active in the window.
func (e *Engine) Rooms(window time.Duration, limit int) []RoomCount {
	from := e.from(e.now().Add(-window))
	var out []RoomCount
	for _, name := range e.roomIdx.activeSince(from) {
		if s, ok := e.roomMap.Load(name); ok {
			if n := s.count(from); n > 0 {
				out = append(out, RoomCount{Room: name, Count: n})
			}
		}
	}
	return RankRooms(out, limit)
}
