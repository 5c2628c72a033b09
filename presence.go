package presence

import (
	"hash/maphash"
	"log/slog"
	"math"
	"math/bits"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/puzpuzpuz/xsync/v3"
)

// Activity is one user's presence: when they were last seen and the meta an
// application attached with [Engine.SetMeta].
type Activity struct {
	ID       string
	LastSeen time.Time // exact, in UTC
	Meta     string
	// Held: the user (or, in a room view, the member) is held (Engine.Hold,
	// HoldIn) as the query reads it, and LastSeen is the query's time.
	Held bool
	// Data is, for a held user (member), the data of each of its open
	// connections ([Conn]) in the order they opened, nil for one without
	// data (a Hold's): globally all of them, in a room the room's.
	Data [][]byte
}

// Engine holds the last-seen time of every user and answers window queries
// over them.
//
// An Engine is safe for concurrent use by multiple goroutines without extra
// locking, and must not be copied. Touch of a known user whose index slot
// does not change takes no lock and allocates nothing; queries take each
// shard's read lock in turn, so a query is not atomic across shards (see
// the package doc's Concurrency section).
type Engine struct {
	users  *xsync.MapOf[string, *entry]
	metas  *xsync.MapOf[string, string] // written under the user's shard lock
	shards []*shard
	// oldestKeys holds every shard.oldest side by side (a scan reads a few
	// cache lines); nil without WithMaxUsers.
	oldestKeys []atomic.Int64
	mask       uint64
	seed       maphash.Seed

	lay       layout
	horizon   int64 // slots the counters' ring holds
	retention int64 // ns; 0 keeps users forever
	maxUsers  int64 // 0: no cap
	expected  int   // WithExpectedUsers
	now       func() time.Time
	saver     *saver         // nil unless made by Open
	touches   *xsync.Counter // every touch; nil without WithTouchCount. Read by every Touch, so with the read-only fields
	log       *slog.Logger   // nil: log nothing

	rooms
	live

	// dirty is set by every change and cleared by the saver. Read after
	// every CAS and written once per save interval at most, it sits with
	// the read-only fields, so its cache line stays shared across cores.
	dirty atomic.Bool
	_     [64]byte

	// n counts reservations against WithMaxUsers: users held and being
	// inserted. Without a cap it stays 0 (shard.held counts): one counter
	// written by every insert on every core would cost each a cache miss.
	n             atomic.Int64
	holding       atomic.Int64 // users (and members) held: while any is, every save has news
	snapNanos     atomic.Int64 // time in SaveFile, all calls
	snapLast      atomic.Int64 // Unix ns at the end of the last good save; 0 before
	snapBytes     atomic.Int64 // the last good save's size
	rejectedIDs   atomic.Uint64
	rejectedRooms atomic.Uint64
	endedRooms    atomic.Uint64
	snapSaves     atomic.Uint64
	snapErrors    atomic.Uint64
}

// New returns an empty Engine configured by opts. It starts no goroutine;
// [Engine.Close] returns nil for it.
func New(opts ...Option) *Engine {
	var c config
	for _, o := range opts {
		o(&c)
	}
	return newEngine(c)
}

func newEngine(c config) *Engine {
	c.fill()
	horizon := maxHorizon
	if c.retention > 0 {
		need := int64(c.retention/c.resolution) + 2
		horizon = max(min(1<<bits.Len64(uint64(need-1)), maxHorizon), minHorizon)
	}
	e := &Engine{
		horizon:   int64(horizon),
		users:     xsync.NewMapOf[string, *entry](xsync.WithPresize(c.expected)),
		metas:     xsync.NewMapOf[string, string](),
		shards:    make([]*shard, c.shards),
		mask:      uint64(c.shards - 1),
		seed:      maphash.MakeSeed(),
		lay:       newLayout(int64(c.resolution)),
		retention: int64(c.retention),
		maxUsers:  int64(c.maxUsers),
		expected:  c.expected,
		now:       c.now,
		log:       c.logger,
	}
	e.onlineWindow, e.grace, e.tick = int64(c.onlineWindow), int64(c.grace), min(max(c.resolution, 10*time.Millisecond), time.Second)
	if e.maxUsers > 0 {
		e.oldestKeys = make([]atomic.Int64, c.shards)
	}
	if c.countTouches {
		e.touches = xsync.NewCounter()
	}
	e.initRooms(c)
	for i := range e.shards {
		e.shards[i] = newShard(e, "")
		if e.oldestKeys != nil {
			e.oldestKeys[i].Store(emptyKey)
			e.shards[i].oldest = &e.oldestKeys[i]
		}
	}
	return e
}

func (e *Engine) shardOf(id string) *shard {
	return e.shards[maphash.String(e.seed, id)&e.mask]
}

// ValidID reports whether id can name a user: 1 to [MaxIDLen] bytes. Every
// backend ignores an invalid ID, and counts it in its Stats.
func ValidID(id string) bool { return len(id) > 0 && len(id) <= MaxIDLen }

// clock returns a reading of the engine's clock at ns (unread: not read yet).
func (e *Engine) clock(ns int64) reading { return reading{clock: e.now, at: ns} }

// floor is the oldest slot retention keeps at now: the engine's one expiry
// rule. A user filed under an older slot is gone as if forgotten, removed
// yet or not. Without retention the clock is not read.
func (e *Engine) floor(now *reading) int64 {
	if e.retention == 0 {
		return math.MinInt64
	}
	return slotOf(now.ns()-e.retention, e.lay.res)
}

// alive reports whether a last-seen time of ns has not expired at now: the
// same rule as expired, for a time rather than an index slot.
func (e *Engine) alive(ns int64, now *reading) bool { return slotOf(ns, e.lay.res) >= e.floor(now) }

// expired reports whether the user filed as it has expired at now.
func (e *Engine) expired(it item, now *reading) bool { return e.lay.slot(it) < e.floor(now) }

// Touch records activity by id now, as read from the engine's clock. An empty
// id or one longer than [MaxIDLen] is ignored and counted in
// [Stats].RejectedIDs.
func (e *Engine) Touch(id string) {
	if !ValidID(id) {
		e.rejectedIDs.Add(1)
		return
	}
	now := e.clock(e.now().UnixNano())
	e.touch(id, now.at, &now)
}

// TouchAt records activity by id at the given time. The last-seen time never
// moves backwards: a time older than the user's current one is ignored, and
// so are the zero time and times outside the years 1678 to 2262.
func (e *Engine) TouchAt(id string, at time.Time) {
	if !ValidID(id) {
		e.rejectedIDs.Add(1)
		return
	}
	if ns, ok := unixNano(at); ok {
		now := e.clock(unread)
		e.touch(id, ns, &now)
	}
}

// touch is the hot path. For a known user in the same slot it is one map
// probe, one CAS and one load: no lock, no allocation, no clock. The touch
// count is an option because even a striped add (a sync.Pool Get and Put)
// adds a quarter to that (BENCHMARKS.md, Metrics).
func (e *Engine) touch(id string, ns int64, now *reading) {
	if e.touches != nil {
		e.touches.Inc()
	}
	ent, ok := e.users.Load(id)
	if !ok {
		e.insert(id, ns, now)
		return
	}
	e.raise(ent, id, ns, now)
}

// markDirty notes a change for the saver. It reads before it writes: a
// store on every call would pull the line away from every other core.
func (e *Engine) markDirty() {
	if !e.dirty.Load() {
		e.dirty.Store(true)
	}
}

// raise moves a known user's last-seen time up to ns, and its index entry
// along if the slot changed.
func (e *Engine) raise(ent *entry, id string, ns int64, now *reading) {
	if e.bump(ent, ns) && !e.shardOf(id).move(ent, len(id), now) {
		// Gone meanwhile, or expired: a new user, at its newest time.
		e.insert(id, ent.lastSeen.Load(), now)
	}
}

// bump raises ent's last-seen time to ns, if that is newer, and reports
// whether its index entry must move: to a new slot, or back in if removed.
func (e *Engine) bump(ent *entry, ns int64) bool {
	for {
		old := ent.lastSeen.Load()
		if ns <= old {
			return false
		}
		if ent.lastSeen.CompareAndSwap(old, ns) {
			break
		}
	}
	e.markDirty()
	// ns > lastSeen >= slot start, so only the end needs checking.
	f := ent.filed.Load()
	return f == removedKey || ns >= e.lay.end(f)
}

// insert adds a user not found in the map. If another goroutine added it
// meanwhile, insert raises it instead and returns its time before that and
// true.
func (e *Engine) insert(id string, ns int64, now *reading) (old int64, known bool) {
	if e.maxUsers > 0 {
		e.reserve()
	}
	ent, known := e.shardOf(id).insert(id, ns, now)
	if !known {
		return 0, false
	}
	if e.maxUsers > 0 {
		e.n.Add(-1)
	}
	old = ent.lastSeen.Load()
	e.raise(ent, id, ns, now)
	return old, true
}

// reserve counts one more user against the cap, evicting the least recently
// seen users to make room.
func (e *Engine) reserve() {
	for {
		n := e.n.Load()
		if n < e.maxUsers {
			if e.n.CompareAndSwap(n, n+1) {
				return
			}
			continue
		}
		victim, _, ok := e.oldest()
		if ok {
			ok = victim.evictMin()
		}
		if !ok {
			// Every counted user is still being inserted by another
			// goroutine; let it finish.
			runtime.Gosched()
		}
	}
}

// oldest returns the least recently seen user and its shard, for an engine
// with WithMaxUsers. It reads each shard's oldest key without a lock (every
// shard's read lock would cost each insert at the cap microseconds), then
// the first user of the shards holding the oldest key. Under concurrent
// writes it is approximate.
func (e *Engine) oldest() (*shard, item, bool) {
	key, first, holders := int64(emptyKey), len(e.oldestKeys), 0
	for i := range e.oldestKeys {
		switch k := e.oldestKeys[i].Load(); {
		case k < key:
			key, first, holders = k, i, 1
		case k == key:
			holders++
		}
	}
	var victim *shard
	var oldest item
	for i := first; i < len(e.oldestKeys) && holders > 0; i++ {
		if e.oldestKeys[i].Load() != key {
			continue // rarely more than one shard holds the key
		}
		holders--
		if it, ok := e.shards[i].min(); ok && (victim == nil || itemLess(it, oldest)) {
			victim, oldest = e.shards[i], it
		}
	}
	return victim, oldest, victim != nil
}

// SetMeta attaches meta (for example a client IP or user agent) to a known
// user; the empty string removes it. It returns false if the user is unknown
// (or expired) or meta is longer than [MaxMetaLen]. Setting the meta a user
// already has takes no lock and allocates nothing; a change takes the
// user's shard lock, so meta never outlives its user.
func (e *Engine) SetMeta(id, meta string) bool {
	now := e.clock(unread)
	return e.setMeta(id, meta, &now)
}

func (e *Engine) setMeta(id, meta string, now *reading) bool {
	if len(meta) > MaxMetaLen {
		return false
	}
	if cur, ok := e.metas.Load(id); ok && cur == meta {
		if e.retention == 0 {
			return true
		}
		// By its index slot, as under the lock: an expired user touched
		// again has a new time but is not yet re-inserted without meta.
		if ent, ok := e.users.Load(id); ok && !e.expired(itemOf(ent), now) {
			return true
		}
	}
	return e.shardOf(id).setMeta(id, meta, now)
}

// Forget removes a user. It returns false if the user was unknown or had
// expired.
func (e *Engine) Forget(id string) bool {
	now := e.clock(unread)
	return e.shardOf(id).forget(id, &now)
}

// Prune removes every user last seen before t and returns how many it
// removed, not counting users that had expired. It holds each shard's lock
// for at most a batch of removals at a time.
func (e *Engine) Prune(t time.Time) int {
	ns, ok := unixNano(t)
	if !ok {
		return 0
	}
	now := e.clock(unread)
	removed := 0
	for _, s := range e.shards {
		removed += s.prune(ns, &now)
	}
	return removed
}

// Stats is a point-in-time summary of an engine's work, for monitoring.
type Stats struct {
	Users   int    // as Len
	Shards  int    // index shards
	Touches uint64 // touches recorded: Touch, TouchAt, TouchIn, TouchInAt and Hold calls with a valid ID (and usable time); 0 without WithTouchCount
	// TouchesCounted: the engine was made WithTouchCount, so Touches counts.
	TouchesCounted bool
	Inserted       uint64 // users added
	Moved          uint64 // index moves: a known user's time entered a new slot
	Evicted        uint64 // users removed to stay within WithMaxUsers
	Expired        uint64 // expired users removed (by any write, Forget and Prune included)
	Forgotten      uint64 // users removed by Forget
	Pruned         uint64 // users removed by Prune
	RejectedIDs    uint64 // Touch calls with an empty or too long ID

	Rooms         int    // rooms with members
	Memberships   int    // members of all rooms, expired ones included until removed
	RoomsEnded    uint64 // rooms ended to stay within WithMaxRooms
	RejectedRooms uint64 // TouchIn calls with an invalid room name

	SnapshotsSaved    uint64        // successful SaveFile calls, the saver's included
	SnapshotErrors    uint64        // failed ones
	SnapshotTime      time.Duration // spent in SaveFile, successful calls and failed
	LastSnapshot      time.Time     // when the last successful save ended; zero before one
	LastSnapshotBytes int64         // that save's size

	Subscribers   int    // open subscriptions
	Events        uint64 // events published (each counted once, however many subscribers)
	EventsDropped uint64 // events subscribers lost by falling behind, summed over subscribers
}

// Stats returns the engine's counters. It takes each shard's read lock in
// turn, so the figures are not one atomic snapshot.
func (e *Engine) Stats() Stats {
	st := Stats{
		Users:          e.Len(),
		Shards:         len(e.shards),
		RejectedIDs:    e.rejectedIDs.Load(),
		SnapshotsSaved: e.snapSaves.Load(),
		SnapshotErrors: e.snapErrors.Load(),
		Rooms:          e.roomMap.Size(),
		Memberships:    e.members.Size(),
		RoomsEnded:     e.endedRooms.Load(),
		RejectedRooms:  e.rejectedRooms.Load(),
		SnapshotTime:   time.Duration(e.snapNanos.Load()),
		EventsDropped:  e.hub.Dropped(),
	}
	if e.touches != nil {
		st.Touches, st.TouchesCounted = uint64(e.touches.Value()), true
	}
	if ns := e.snapLast.Load(); ns != 0 {
		st.LastSnapshot, st.LastSnapshotBytes = time.Unix(0, ns).UTC(), e.snapBytes.Load()
	}
	st.Subscribers = e.hub.Subscribers()
	st.Events = e.hub.Published()
	for _, s := range e.shards {
		s.addStats(&st)
	}
	return st
}

// Close ends the engine's background work and returns its last error. For
// an engine made by [Open], it stops the saver and writes a final snapshot
// if anything changed since the last, returning that save's error; an
// engine made by [New] has no background work, and Close returns nil. For
// both, Close is idempotent (later calls return nil), and the engine keeps
// answering queries and taking touches after it.
func (e *Engine) Close() error {
	e.closeLive()
	if e.saver == nil {
		return nil
	}
	return e.saver.close(e)
}
