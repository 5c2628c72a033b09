package presence

import (
	"cmp"
	"hash/crc32"
	"hash/maphash"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/puzpuzpuz/xsync/v3"
)

// rooms is an engine's rooms. A room is one shard, indexing its members by
// their last-seen time in the room, as the engine's shards index its users;
// a membership is an entry in members. Locks are taken in one order: an
// engine shard's, then a room's, then a user's room list, the room index
// or the sweep's schedule. Nothing that holds a room's lock takes another room's.
type rooms struct {
	roomMap   *xsync.MapOf[string, *shard]    // by name; a room leaves it once empty
	members   *xsync.MapOf[member, *entry]    // every membership
	userRooms *xsync.MapOf[string, *roomList] // the rooms each member is in
	roomIdx   roomIndex                       // each room's latest activity
	perUser   int                             // WithMaxRoomsPerUser; 0: no cap
	joined    atomic.Bool                     // set by the first join, read by every drop
}

// member is a membership's key.
type member struct{ room, id string }

// roomList is the rooms a user is in, in the order joined. It is dead once
// emptied and removed from userRooms; a writer that finds it dead looks
// again.
type roomList struct {
	mu    sync.Mutex
	names []string
	dead  bool
}

func (e *Engine) initRooms(c config) {
	e.roomIdx.idx, e.roomIdx.max = newIndex(e.lay, e.horizon, false), c.maxRooms
	e.roomMap = xsync.NewMapOf[string, *shard]()
	// Two string hashes, mixed: the runtime's hash of a struct of strings
	// costs a TouchIn a third more.
	e.members = xsync.NewMapOfWithHasher[member, *entry](func(m member, _ uint64) uint64 {
		return maphash.String(e.seed, m.room) ^ bits.RotateLeft64(maphash.String(e.seed, m.id), 29)
	})
	e.userRooms = xsync.NewMapOf[string, *roomList]()
	e.perUser = c.perUser
}

// ValidRoom reports whether name can name a room: like an ID, 1 to
// [MaxIDLen] bytes, and valid UTF-8 without NUL.
func ValidRoom(name string) bool {
	return ValidID(name) && utf8.ValidString(name) && strings.IndexByte(name, 0) < 0
}

// TouchIn records activity by id now in room, and globally as [Engine.Touch]
// does. A room name that is empty, longer than [MaxIDLen], not valid UTF-8
// or holding a NUL byte is ignored (the global touch is still recorded) and
// counted in [Stats].RejectedRooms. A touch of a member whose index slot in
// the room does not change takes no lock and allocates nothing.
func (e *Engine) TouchIn(room, id string) {
	if !ValidID(id) {
		e.rejectedIDs.Add(1)
		return
	}
	now := e.clock(e.now().UnixNano())
	e.touch(id, now.at, &now)
	e.touchIn(room, id, now.at, &now)
}

// TouchInAt records activity by id in room at the given time, and globally
// as [Engine.TouchAt] does. The time in the room never moves backwards.
func (e *Engine) TouchInAt(room, id string, at time.Time) {
	if !ValidID(id) {
		e.rejectedIDs.Add(1)
		return
	}
	if ns, ok := unixNano(at); ok {
		now := e.clock(unread)
		e.touch(id, ns, &now)
		e.touchIn(room, id, ns, &now)
	}
}

// touchIn is the rooms' hot path: for a member in the same slot, one map
// probe and one CAS, as for Touch.
func (e *Engine) touchIn(room, id string, ns int64, now *reading) {
	ent, ok := e.members.Load(member{room, id})
	if ok && !e.bump(ent, ns) {
		return
	}
	// The name of a room someone is in is valid: only a join checks it.
	if !ok && !ValidRoom(room) {
		e.rejectedRooms.Add(1)
		return
	}
	e.fileIn(room, id, ent, ns, now)
}

// fileIn files id in room at ns: a move of ent if it is a member already
// (bumped to ns), a join if ent is nil.
func (e *Engine) fileIn(room, id string, ent *entry, ns int64, now *reading) {
	var s *shard
	for {
		if ent != nil {
			var ok bool
			if s, ok = e.roomMap.Load(room); ok && s.move(ent, len(id), now) {
				break
			}
			// The room ended, or the membership expired: a join anew, at
			// the membership's newest time.
			ns = max(ns, ent.lastSeen.Load())
		}
		s, _ = e.roomMap.LoadOrCompute(room, func() *shard { return newShard(e, room) })
		got, known := s.insert(id, ns, now)
		if got == nil {
			ent = nil
			continue // the room ended meanwhile
		}
		if known { // joined by another goroutine meanwhile
			if !e.bump(got, ns) {
				break
			}
			ent = got
			continue
		}
		if !e.joined.Load() {
			e.joined.Store(true)
		}
		if e.perUser > 0 {
			e.trimRooms(id)
		}
		if _, ok := e.users.Load(id); !ok {
			e.insert(id, ns, now) // a Forget came between: as if it came first
		}
		break
	}
	// Outside every room's lock: an insert at WithMaxRooms ends a room.
	e.activate(s, ns, now)
}

// addRoomOf notes that id joined room. Called with room's lock held.
func (e *Engine) addRoomOf(id, room string) {
	for {
		l, _ := e.userRooms.LoadOrCompute(id, func() *roomList { return new(roomList) })
		l.mu.Lock()
		if !l.dead {
			l.names = append(l.names, room)
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
	}
}

// removeRoomOf notes that id left room. Called with room's lock held.
func (e *Engine) removeRoomOf(id, room string) {
	for {
		l, ok := e.userRooms.Load(id)
		if !ok {
			return
		}
		l.mu.Lock()
		if l.dead {
			l.mu.Unlock()
			continue
		}
		if i := slices.Index(l.names, room); i >= 0 {
			l.names = slices.Delete(l.names, i, i+1)
		}
		if len(l.names) == 0 {
			l.dead = true
			e.userRooms.Delete(id)
		}
		l.mu.Unlock()
		return
	}
}

// roomsOf returns a copy of the names of the rooms id is in.
func (e *Engine) roomsOf(id string) []string {
	l, ok := e.userRooms.Load(id)
	if !ok {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.names)
}

// roomCount returns how many rooms id is in.
func (e *Engine) roomCount(id string) int {
	l, ok := e.userRooms.Load(id)
	if !ok {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.names)
}

// roomTimes appends id's memberships that have not expired at now to buf.
func (e *Engine) roomTimes(id string, buf []roomTime, now *reading) []roomTime {
	for _, name := range e.roomsOf(id) {
		if ent, ok := e.members.Load(member{name, id}); ok {
			if ns := ent.lastSeen.Load(); e.alive(ns, now) {
				buf = append(buf, roomTime{name, e.seen(ns, now)})
			}
		}
	}
	return buf
}

// leaveAll removes id from every room it is in. Called with id's engine
// shard lock held, when id leaves the engine.
func (e *Engine) leaveAll(id string) {
	for _, name := range e.roomsOf(id) {
		if s, ok := e.roomMap.Load(name); ok {
			s.remove(id)
		}
	}
}

// trimRooms makes id leave the rooms it was least recently active in until
// it is in WithMaxRoomsPerUser. Within the cap it costs a lock and a length.
func (e *Engine) trimRooms(id string) {
	for {
		if e.roomCount(id) <= e.perUser {
			return
		}
		names := e.roomsOf(id)
		victim, oldest := "", int64(0)
		for _, name := range names {
			ls := int64(minNano - 1) // a membership leaving meanwhile goes first
			if ent, ok := e.members.Load(member{name, id}); ok {
				ls = ent.lastSeen.Load()
			}
			if victim == "" || ls < oldest || ls == oldest && name < victim {
				victim, oldest = name, ls
			}
		}
		if s, ok := e.roomMap.Load(victim); !ok || !s.remove(id) {
			e.removeRoomOf(id, victim) // gone meanwhile, or never filed
		}
	}
}

// Leave ends id's membership of room; id's global last-seen time stays. It
// returns false if id was not a member, or its membership had expired.
func (e *Engine) Leave(room, id string) bool {
	s, ok := e.roomMap.Load(room)
	if !ok {
		return false
	}
	now := e.clock(unread)
	return s.forget(id, &now)
}

// RoomsOf returns the names of the rooms id is in, most recently active
// first (ties by name).
func (e *Engine) RoomsOf(id string) []string {
	now := e.clock(unread)
	in := e.roomTimes(id, nil, &now)
	slices.SortFunc(in, func(a, b roomTime) int { return cmp.Or(cmp.Compare(b.ns, a.ns), strings.Compare(a.name, b.name)) })
	names := make([]string, len(in))
	for i, r := range in {
		names[i] = r.name
	}
	return names
}

// RoomCount is a room and how many members were active in it.
type RoomCount struct {
	Room  string
	Count int
}

// RankRooms sorts rs busiest first, ties by name, and returns at most limit
// of them (limit <= 0: all): the order of every backend's Rooms.
func RankRooms(rs []RoomCount, limit int) []RoomCount {
	slices.SortFunc(rs, func(a, b RoomCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Room, b.Room))
	})
	if limit > 0 && len(rs) > limit {
		rs = rs[:limit:limit]
	}
	return rs
}

// Room is a read view of one room of an engine: its members, each with
// the time it was last seen in the room. A view is a plain value, safe for
// concurrent use; it names the room, so it sees the room as it is at each
// call. A room no one is in (or an invalid name) is empty.
type Room struct {
	e    *Engine
	name string
}

// Room returns the view of the room called name.
func (e *Engine) Room(name string) Room { return Room{e: e, name: name} }

// Name returns the room's name.
func (r Room) Name() string { return r.name }

func (r Room) shards() []*shard {
	if s, ok := r.e.roomMap.Load(r.name); ok {
		return []*shard{s}
	}
	return nil
}

// CountSince returns the number of members last seen in the room at t or
// later, at the resolution, as [Engine.CountSince]. A room of a few hundred
// members or more reads slot counters; a smaller one walks its members.
func (r Room) CountSince(t time.Time) int {
	if s, ok := r.e.roomMap.Load(r.name); ok {
		return s.count(r.e.from(t))
	}
	return 0
}

// Count returns the number of members seen in the room within window of now.
func (r Room) Count(window time.Duration) int { return r.CountSince(r.e.now().Add(-window)) }

// Page returns up to limit members seen in the room since t, newest first
// by their time in the room, after the cursor, as [Engine.Page] does for the
// engine's users; Activity.LastSeen is the time in the room and Meta the
// user's. A cursor of another room or of the engine's own walk is refused:
// see [Room.CheckCursor].
func (r Room) Page(t time.Time, after Cursor, limit int) ([]Activity, Cursor) {
	return r.e.page(r.shards(), scopeOf(r.name), t, after, limit)
}

// Recent returns the members seen in the room within window of now, newest
// first, at most limit of them (limit <= 0: all).
func (r Room) Recent(window time.Duration, limit int) []Activity {
	page, _ := r.Page(r.e.now().Add(-window), Cursor{}, limit)
	return page
}

// Get returns id's activity in the room (LastSeen is the time in the room,
// Meta the user's), or false if id is not a member or its membership
// expired.
func (r Room) Get(id string) (Activity, bool) {
	ent, ok := r.e.members.Load(member{r.name, id})
	if !ok {
		return Activity{}, false
	}
	now := r.e.clock(unread)
	ns := ent.lastSeen.Load()
	if !r.e.alive(ns, &now) {
		return Activity{}, false
	}
	room, ok := r.e.roomMap.Load(r.name)
	if !ok {
		return Activity{}, false // ended meanwhile
	}
	return r.e.activity(room, id, ns), true
}

// Online returns how many members are in the room now: held, or seen in
// it within the online window, and not gone by a hold's grace; as
// [Engine.Online] does for the users.
func (r Room) Online() int {
	s, ok := r.e.roomMap.Load(r.name)
	if !ok {
		return 0
	}
	return max(0, s.count(r.e.onlineSlot())-s.graceOffLen())
}

// OnlinePage returns up to limit members in the room now (as Online counts
// them), newest first by their time in the room, after the cursor, as
// [Engine.OnlinePage] does for the users; a held member's Activity.Data
// lists its connections in the room.
func (r Room) OnlinePage(after Cursor, limit int) ([]Activity, Cursor) {
	return r.e.onlinePage(r.shards(), scopeOf(r.name), after, limit)
}

// LastSeen returns the time id was last seen in the room, or false if id is
// not a member or its membership expired.
func (r Room) LastSeen(id string) (time.Time, bool) {
	a, ok := r.Get(id)
	return a.LastSeen, ok
}

// CheckCursor returns nil if c is the zero Cursor or was returned by a page
// of this room, and an error wrapping [ErrInvalidCursor] otherwise. Page
// answers a cursor it refuses with an empty last page.
func (r Room) CheckCursor(c Cursor) error { return c.check(scopeOf(r.name)) }

// scopeOf is the scope of the cursors of room's walk: a CRC-32C of its
// name, never 0, which is the engine's own walk.
func scopeOf(room string) uint32 { return crc32.Checksum([]byte(room), castagnoli) | 1 }
