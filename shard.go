package presence

import (
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// entry is one user's state, updated in place with atomics by the hot path.
// The ID's bytes follow it in the same allocation (newEntry). Meta lives in
// Engine.metas: most engines set none, and a pointer here would cost every
// user 8 bytes.
type entry struct {
	lastSeen atomic.Int64 // exact, Unix ns; only grows (Engine.raise)
	// filed is the key of the entry's item in the index: the hot path tells
	// "same slot" from it, a move finds the item by it. Written under the
	// shard's lock; removedKey once the user has left the engine, which
	// sends a late Touch holding the pointer down the slow path.
	filed atomic.Int64
}

const (
	removedKey = math.MinInt64
	emptyKey   = math.MaxInt64 // beyond every item's key (see layout)
	entrySize  = unsafe.Sizeof(entry{})
)

// newEntry returns a zero entry followed by a copy of id, in one byte slice
// the collector never scans (an entry holds no pointers). Allocations of 16
// bytes or more are 8-byte aligned, as the atomics need; id is never empty.
func newEntry(id string) *entry {
	b := make([]byte, int(entrySize)+len(id))
	copy(b[entrySize:], id)
	return (*entry)(unsafe.Pointer(unsafe.SliceData(b)))
}

// id returns the entry's n-byte ID (the key holds the length), sharing its memory.
func (ent *entry) id(n int) string {
	return unsafe.String((*byte)(unsafe.Add(unsafe.Pointer(ent), entrySize)), n)
}

// itemOf returns the item filing ent. Call it with ent's shard lock held.
func itemOf(ent *entry) item { return item{key: ent.filed.Load(), ent: ent} }

// shard is one lock's worth of the index: a B-tree of (time, id) items and
// per-slot counters. A user's shard is chosen by a hash of its ID, so every
// insert and removal of one ID (in the engine's shared maps) is serialized
// by one shard lock.
//
// The engine uses a shard only through the methods from insert to addStats,
// each of which takes the lock and states its contract; the helpers after
// them are called with the lock held. Fields are guarded by mu unless noted.
type shard struct {
	mu  sync.RWMutex
	e   *Engine // the owner: its maps, layout, retention and cap; immutable
	lay layout  // the engine's; immutable
	idx index

	held atomic.Int64 // users filed; read without mu by Engine.Len

	// oldest mirrors the key of the tree's first item (emptyKey if none),
	// so that an insert at the cap finds the least recently seen user
	// without taking every shard's lock. Nil without WithMaxUsers.
	oldest *atomic.Int64

	inserted, moved, evicted, expired, forgotten, pruned uint64

	// room is the name of the room whose members the shard indexes, or ""
	// for one of the engine's own shards. A room is one shard, found in
	// Engine.rooms; it is dead once it emptied and left that map, and
	// takes no more members (a writer that finds it dead looks again).
	room string
	dead bool
	// active is a room's latest activity, in the engine's room index;
	// activeHolds counts its holds (guarded by the index's lock).
	active      *entry
	activeHolds int

	// edge is where the online window began when the sweeper last passed
	// (Engine.sweep): a user filed at it or older was announced offline.
	// graceOff holds the users announced offline by a hold's grace while
	// filed above it; holds the users held. See events.go.
	edge     item
	due      int64 // a room's slot in the sweep's schedule, or noDue (dueRoom)
	graceOff map[string]struct{}
	holds    map[string]*holdSet

	_ [64]byte // keep neighbouring shards' locks off this cache line
}

// newShard returns an empty shard of e, indexing the room named room ("":
// the engine's own users).
func newShard(e *Engine, room string) *shard {
	s := &shard{
		e:    e,
		lay:  e.lay,
		idx:  newIndex(e.lay, e.horizon, room == ""),
		room: room,
		edge: item{key: math.MinInt64},
		due:  noDue,
	}
	if room != "" {
		// A copy: the caller's string may point into a request buffer.
		s.active = newActivity(room)
		s.room = s.active.id(len(room))
	}
	if e.started.Load() {
		s.edge = e.lay.bound(e.edgeSlot.Load())
	}
	return s
}

// roomCountAt is the size from which a room keeps slot counters (the
// engine's shards always do): a smaller room is counted by a walk, which
// costs less than the counters' memory.
const roomCountAt = 256

// insert adds id, last seen at ns, and returns its entry and false; if id
// is held already, it changes nothing and returns that entry and true. The
// caller has reserved room under the cap. A dead room takes no one: it
// returns nil and false.
func (s *shard) insert(id string, ns int64, now *reading) (*entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return nil, false
	}
	if ent, ok := s.load(id); ok {
		return ent, true
	}
	// A copy: the caller's string may point into a large request buffer.
	ent := newEntry(id)
	id = ent.id(len(id))
	ent.lastSeen.Store(ns)
	s.file(ent, len(id), ns, now)
	if s.room == "" {
		s.e.users.Store(id, ent)
	} else {
		s.e.members.Store(member{s.room, id}, ent)
		s.e.addRoomOf(id, s.room)
		if s.held.Load() >= roomCountAt {
			s.idx.startCounting(now)
		}
	}
	s.inserted++
	s.held.Add(1)
	s.e.markDirty()
	if it := itemOf(ent); s.online(it) {
		s.cameOnline(ent, id, ns, now)
	}
	s.expire(now)
	return ent, false
}

// move files ent, an n-byte ID, under the slot of its current last-seen
// time and reports true. The last raiser of lastSeen checks filed after its
// CAS, and filed is written here from a fresh load, so once touches stop
// every entry sits in the slot of its final time. It reports false, for the
// caller to insert the user anew, if the user has left the engine or was
// filed in an expired slot (removed here, so it comes back without meta).
func (s *shard) move(ent *entry, n int, now *reading) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ent.filed.Load() == removedKey {
		return false
	}
	old, ls := itemOf(ent), ent.lastSeen.Load()
	if s.e.expired(old, now) {
		s.drop(old)
		s.expired++
		return false
	}
	if slotOf(ls, s.lay.res) != s.lay.slot(old) {
		was := s.online(old)
		s.unfile(old)
		s.file(ent, n, ls, now)
		s.moved++
		s.forgive(old.id())
		if !was && s.online(itemOf(ent)) {
			s.cameOnline(ent, old.id(), ls, now)
		}
		s.expire(now)
	}
	return true
}

// setMeta stores meta ("" removes it) for id and reports true, unless id is
// unknown or expired (and removed). The lock keeps meta from outliving id.
func (s *shard) setMeta(id, meta string, now *reading) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ent, ok := s.live(id, now)
	if !ok {
		return false
	}
	if meta == "" {
		s.e.metas.Delete(id)
	} else {
		s.e.metas.Store(ent.id(len(id)), strings.Clone(meta))
	}
	s.e.markDirty()
	return true
}

// forget removes id and reports whether it was held and not expired.
func (s *shard) forget(id string, now *reading) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ent, ok := s.live(id, now)
	if ok {
		s.drop(itemOf(ent))
		s.forgotten++
	}
	return ok
}

// remove removes id, expired or not, and reports whether it was held.
func (s *shard) remove(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ent, ok := s.load(id)
	if ok {
		s.drop(itemOf(ent))
	}
	return ok
}

// clear removes every user of a room, which ends it, and reports whether
// it had not ended already.
func (s *shard) clear() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return false
	}
	for _, it := range s.idx.all() {
		s.drop(it)
		s.evicted++
	}
	return true
}

// prune removes every user last seen before ns, holding the lock for
// pruneBatch removals at most, and returns how many were not expired.
func (s *shard) prune(ns int64, now *reading) int {
	floor := s.e.floor(now)
	limit := s.lay.bound(slotOf(ns, s.lay.res) + 1)
	removed := 0
	batch := make([]item, 0, pruneBatch)
	// Each batch resumes after the last: a walk from the oldest would pass
	// over the users of ns's slot seen at ns or later again and again.
	var from item
	for {
		batch = batch[:0]
		s.mu.Lock()
		visit := func(it item) bool {
			if it.ent.lastSeen.Load() < ns {
				batch = append(batch, it)
			}
			return len(batch) < pruneBatch
		}
		s.idx.before(from, limit, visit)
		for _, it := range batch {
			s.drop(it)
			if s.lay.slot(it) < floor {
				s.expired++
			} else {
				s.pruned++
				removed++
			}
		}
		s.mu.Unlock()
		if len(batch) < pruneBatch {
			return removed
		}
		from = batch[len(batch)-1]
	}
}

// min returns the shard's least recently seen user, or false if none.
func (s *shard) min() (item, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.idx.min()
}

// evictMin removes the least recently seen user for the cap; false if
// there is none.
func (s *shard) evictMin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.idx.min()
	if ok {
		s.drop(it)
		s.evicted++
	}
	return ok
}

// count returns how many users the shard files at slot from or newer. No
// defer: a count of 1024 shards makes 1024 calls.
func (s *shard) count(from int64) int {
	s.mu.RLock()
	n := s.idx.count(from)
	s.mu.RUnlock()
	return n
}

// collect appends up to w.limit items of the window to buf, newest first.
// With w.online, only the users online as announced: above the edge,
// once the sweeper runs, and not gone by a grace.
func (s *shard) collect(w window, buf []item) []item {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if w.online {
		w.stop, w.hasStop = s.edge, s.e.started.Load()
		w.skip = s.graceOff
	}
	return s.idx.collect(w, buf)
}

// clone returns a copy-on-write clone of the index, in O(1).
func (s *shard) clone() *index {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.idx.clone()
}

// addStats adds the shard's counters to st.
func (s *shard) addStats(st *Stats) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st.Inserted += s.inserted
	st.Moved += s.moved
	st.Evicted += s.evicted
	st.Expired += s.expired
	st.Forgotten += s.forgotten
	st.Pruned += s.pruned
}

// load returns id's entry in the engine's map of users, or of members for a room.
func (s *shard) load(id string) (*entry, bool) {
	if s.room == "" {
		return s.e.users.Load(id)
	}
	return s.e.members.Load(member{s.room, id})
}

// live returns id's entry, unless id is unknown or expired (and removed).
func (s *shard) live(id string, now *reading) (*entry, bool) {
	ent, ok := s.load(id)
	if ok && s.e.expired(itemOf(ent), now) {
		s.drop(itemOf(ent))
		s.expired++
		return nil, false
	}
	return ent, ok
}

// file indexes ent, whose ID is n bytes long, at time ns.
func (s *shard) file(ent *entry, n int, ns int64, now *reading) {
	it := item{key: s.lay.key(ns, ent.id(n)), ent: ent}
	s.idx.insert(it, now)
	ent.filed.Store(it.key)
	if s.oldest != nil && it.key < s.oldest.Load() {
		s.oldest.Store(it.key)
	}
	if slot := s.lay.slot(it); slot < s.due && s.room != "" && s.e.dueOn.Load() {
		s.e.setDue(s, slot)
	}
}

// unfile takes the item out of the index.
func (s *shard) unfile(it item) {
	s.idx.remove(it)
	if s.oldest != nil && it.key == s.oldest.Load() {
		key := int64(emptyKey)
		if first, ok := s.idx.min(); ok {
			key = first.key
		}
		s.oldest.Store(key)
	}
}

// drop removes a user from the index and the maps and marks it removed. A
// user leaves every room with it; a room left empty leaves the engine.
func (s *shard) drop(it item) {
	was := s.online(it)
	s.unfile(it)
	it.ent.filed.Store(removedKey)
	s.held.Add(-1)
	s.e.markDirty()
	id := it.id()
	s.forgive(id)
	if _, ok := s.holds[id]; ok {
		delete(s.holds, id)
		s.e.holding.Add(-1)
	}
	if s.room != "" {
		if was {
			s.announce(false, id, 0, nil)
		}
		s.e.members.Delete(member{s.room, id})
		s.e.removeRoomOf(id, s.room)
		if s.held.Load() == 0 {
			s.dead = true
			s.e.roomMap.Delete(s.room)
			s.e.roomIdx.forget(s.active)
		}
		return
	}
	s.e.users.Delete(id)
	s.e.metas.Delete(id)
	if s.e.maxUsers > 0 {
		s.e.n.Add(-1)
	}
	if s.e.joined.Load() {
		s.e.leaveAll(id)
	}
	if was {
		// After the Leaves: a user's last Leave comes before its Offline.
		s.announce(false, id, 0, nil)
	}
}

// expire removes up to expireBudget expired users. The floor comes from the
// clock, as the queries' does: one TouchAt far ahead must not expire users.
func (s *shard) expire(now *reading) {
	if s.e.retention == 0 {
		return
	}
	floor := s.e.floor(now)
	for range expireBudget {
		it, ok := s.idx.min()
		if !ok || s.lay.slot(it) >= floor {
			return
		}
		s.drop(it)
		s.expired++
	}
}
