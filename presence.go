package presence

import (
	"hash/maphash"
	"iter"
	"math"
	"math/bits"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/puzpuzpuz/xsync/v3"
)

// Limits on what the engine stores. Longer IDs are rejected by Touch and
// TouchAt (and counted in [Stats].RejectedIDs); longer meta by SetMeta.
const (
	MaxIDLen   = 512
	MaxMetaLen = 1024
)

const (
	defaultResolution = time.Second
	minResolution     = time.Millisecond
	maxResolution     = 24 * time.Hour
	maxShards         = 1024
	minHorizon        = 4096    // slots; the counters' coarsest block
	maxHorizon        = 1 << 17 // slots: 36 hours at the default resolution
	expireBudget      = 32      // users a write may expire while it holds a lock
	pruneBatch        = 1024    // users Prune removes per lock hold
	pageBatch         = 256     // users Since reads per lock hold
	maxExpected       = 1 << 30 // the largest map WithExpectedUsers or a snapshot sizes
)

// Option configures an [Engine]. Options are applied in order; values out of
// range are corrected as each option documents.
type Option func(*config)

type config struct {
	shards     int
	resolution time.Duration
	retention  time.Duration
	maxUsers   int
	expected   int
	now        func() time.Time

	// Used by Open (snapshot.go).
	snapshotEvery       time.Duration
	startEmptyOnCorrupt bool
	onSnapshotError     func(error)
}

// WithShards sets the number of index shards, rounded up to a power of two
// (at most 1024). Each shard has its own lock, B-tree and slot counters; more
// shards mean less contention on index moves and a little more work per
// query. A shard costs about 9 KiB, and 16 KiB more for each block of 4096
// index slots (68 minutes at the default resolution) in which it holds
// users. n <= 0 selects the default, 4 x GOMAXPROCS rounded up.
func WithShards(n int) Option { return func(c *config) { c.shards = n } }

// WithResolution sets the granularity of the time index (default 1s; at
// least 1ms and at most 24h; d <= 0 selects the default). A user's index entry moves at most once
// per resolution, so a coarser resolution makes Touch cheaper; window queries
// are exact to the resolution.
func WithResolution(d time.Duration) Option { return func(c *config) { c.resolution = d } }

// WithRetention makes the engine forget users idle for longer than d, to
// the resolution: a user stays while the slot of its last-seen time is no
// older than the slot of now minus d. Zero (the default) or a negative d
// keeps users until Forget, Prune or eviction. Retention counts from the
// engine's clock, not from the newest time TouchAt was given.
// Expired users vanish from every query at once, and are gone as if
// forgotten: SetMeta and Forget return false for them, and a later Touch
// brings one back as a new user, without its meta. Their memory is
// reclaimed a few at a time by later inserts and index moves, or at once by
// [Engine.Prune].
func WithRetention(d time.Duration) Option { return func(c *config) { c.retention = d } }

// WithMaxUsers caps the number of users held. A new user beyond the cap
// evicts the least recently seen users first. Zero (the default) or a
// negative n means no cap.
func WithMaxUsers(n int) Option { return func(c *config) { c.maxUsers = n } }

// WithExpectedUsers sizes the engine's user map for n users up front, as
// make(map, n) does, instead of letting it double its way there: each
// doubling rehashes every user, and while it runs, inserts wait. Loading a
// snapshot into an engine made by New gains most (about twice as fast for
// 10M users; see BENCHMARKS.md); [Open] sizes the map for the snapshot
// it loads by itself. The map never shrinks below n, and costs 17 to 34
// bytes per expected user at once (its table's length is a power of two).
// Zero (the default) or a negative n sizes nothing; n is capped at 2^30.
func WithExpectedUsers(n int) Option { return func(c *config) { c.expected = n } }

// WithClock sets the clock Touch and the window queries read; nil selects
// time.Now. Tests use it to move time by hand. Retention counts from it,
// and the slot counters follow it: a time TouchAt gives more than 1/64 of
// the counters' horizon ahead of it (34 minutes at the default resolution
// without retention; with a short retention, less) is counted apart until
// the clock comes near.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// Activity is one user's presence: when they were last seen and the meta an
// application attached with [Engine.SetMeta].
type Activity struct {
	ID       string
	LastSeen time.Time // exact, in UTC
	Meta     string
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
	// oldestKeys holds each shard's shard.oldest side by side, so a scan of
	// all of them reads a few cache lines; nil without WithMaxUsers.
	oldestKeys []atomic.Int64
	mask       uint64
	seed       maphash.Seed

	lay       layout
	retention int64 // ns; 0 keeps users forever
	maxUsers  int64 // 0: no cap
	now       func() time.Time
	cfg       config
	saver     *saver // nil unless made by Open (snapshot.go)

	// dirty is set by every change and cleared by the saver. Touch reads
	// it after every CAS, and it is written once per save interval at
	// most, so it sits with the read-only fields, away from the counters
	// below, and its cache line stays shared across cores.
	dirty atomic.Bool
	_     [64]byte

	// n counts reservations against WithMaxUsers: the users held and those
	// being inserted. Without a cap it stays 0, and only the shards count
	// users (shard.held): one counter written by every insert on every core
	// would cost each a cache miss.
	n           atomic.Int64
	rejectedIDs atomic.Uint64
	snapSaves   atomic.Uint64
	snapErrors  atomic.Uint64
}

// New returns an empty Engine configured by opts.
func New(opts ...Option) *Engine {
	var c config
	for _, o := range opts {
		o(&c)
	}
	if c.shards <= 0 {
		c.shards = 4 * runtime.GOMAXPROCS(0)
	}
	c.shards = min(1<<bits.Len(uint(c.shards-1)), maxShards)
	if c.resolution <= 0 {
		c.resolution = defaultResolution
	}
	c.resolution = min(max(c.resolution, minResolution), maxResolution)
	c.retention = max(c.retention, 0)
	c.maxUsers = max(c.maxUsers, 0)
	c.expected = min(max(c.expected, 0), maxExpected)
	if c.now == nil {
		c.now = time.Now
	}

	horizon := maxHorizon
	if c.retention > 0 {
		need := int64(c.retention/c.resolution) + 2
		horizon = max(min(1<<bits.Len64(uint64(need-1)), maxHorizon), minHorizon)
	}
	e := &Engine{
		users:     xsync.NewMapOf[string, *entry](xsync.WithPresize(c.expected)),
		metas:     xsync.NewMapOf[string, string](),
		shards:    make([]*shard, c.shards),
		mask:      uint64(c.shards - 1),
		seed:      maphash.MakeSeed(),
		lay:       newLayout(int64(c.resolution)),
		retention: int64(c.retention),
		maxUsers:  int64(c.maxUsers),
		now:       c.now,
		cfg:       c,
	}
	if e.maxUsers > 0 {
		e.oldestKeys = make([]atomic.Int64, c.shards)
	}
	for i := range e.shards {
		e.shards[i] = newShard(horizon, e.lay)
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

func validID(id string) bool { return len(id) > 0 && len(id) <= MaxIDLen }

// Touch records activity by id now, as read from the engine's clock. An empty
// id or one longer than [MaxIDLen] is ignored and counted in
// [Stats].RejectedIDs.
func (e *Engine) Touch(id string) {
	if !validID(id) {
		e.rejectedIDs.Add(1)
		return
	}
	ns := e.now().UnixNano()
	e.touch(id, ns, ns)
}

// TouchAt records activity by id at the given time. The last-seen time never
// moves backwards: a time older than the user's current one is ignored, and
// so are the zero time and times outside the years 1678 to 2262.
func (e *Engine) TouchAt(id string, at time.Time) {
	if !validID(id) {
		e.rejectedIDs.Add(1)
		return
	}
	if ns, ok := unixNano(at); ok {
		e.touch(id, ns, unread)
	}
}

// touch is the hot path. For a known user in the same slot it is one map
// probe, one CAS and one load: no lock, no allocation. now is the clock's
// reading, or unread.
func (e *Engine) touch(id string, ns, now int64) {
	ent, ok := e.users.Load(id)
	if !ok {
		e.insert(id, ns, now)
		return
	}
	e.raise(ent, id, ns, now)
}

// markDirty notes a change for the saver. It reads before it writes: a
// store on every call would pull the flag's cache line away from every
// other core that touches, merges or inserts at the same moment.
func (e *Engine) markDirty() {
	if !e.dirty.Load() {
		e.dirty.Store(true)
	}
}

// raise moves a known user's last-seen time up to ns, and its index entry
// along if the slot changed.
func (e *Engine) raise(ent *entry, id string, ns, now int64) {
	for {
		old := ent.lastSeen.Load()
		if ns <= old {
			return
		}
		if ent.lastSeen.CompareAndSwap(old, ns) {
			break
		}
	}
	e.markDirty()
	// ns > lastSeen >= slot start, so only the end needs checking. A removed
	// entry goes to move, which re-inserts it.
	if f := ent.filed.Load(); f != removedKey && ns < e.lay.end(f) {
		return
	}
	e.move(ent, id, ns, now)
}

// move files ent under the slot of its current last-seen time. Whoever raises
// lastSeen last checks filed after its CAS, and filed is only written under
// the lock from a fresh load of lastSeen, so once touches stop every entry
// sits in the slot of its final time.
//
// A user filed in a slot that has expired is gone, as if forgotten, even if
// no write has reclaimed it yet: move removes it and inserts it anew, so
// that it comes back without its old meta, as a user Forget removed would.
func (e *Engine) move(ent *entry, id string, ns, now int64) {
	floor := e.floorAt(&now)
	s := e.shardOf(id)
	s.mu.Lock()
	if ent.filed.Load() == removedKey { // forgotten, pruned or evicted meanwhile
		s.mu.Unlock()
		e.insert(id, ns, now)
		return
	}
	old, ls := itemOf(ent), ent.lastSeen.Load()
	if e.lay.slot(old) < floor {
		e.drop(s, old)
		s.expired++
		s.mu.Unlock()
		e.insert(id, ls, now)
		return
	}
	if slotOf(ls, e.lay.res) != e.lay.slot(old) {
		s.unfile(old)
		s.add(ent, len(id), ls, func() int64 { return slotOf(e.read(&now), e.lay.res) })
		s.moved++
		e.expire(s, floor)
	}
	s.mu.Unlock()
}

// insert adds a user not found in the map. If another goroutine added it
// meanwhile, insert raises it instead and returns its time before that and
// true.
func (e *Engine) insert(id string, ns, now int64) (old int64, known bool) {
	reserved := e.maxUsers > 0
	if reserved {
		e.reserve()
	}
	s := e.shardOf(id)
	s.mu.Lock()
	if ent, ok := e.users.Load(id); ok {
		s.mu.Unlock()
		if reserved {
			e.n.Add(-1)
		}
		old = ent.lastSeen.Load()
		e.raise(ent, id, ns, now)
		return old, true
	}
	// A copy: the caller's string may point into a large request buffer.
	ent := newEntry(id)
	id = ent.id(len(id))
	ent.lastSeen.Store(ns)
	s.add(ent, len(id), ns, func() int64 { return slotOf(e.read(&now), e.lay.res) })
	e.users.Store(id, ent)
	s.inserted++
	s.held.Add(1)
	e.markDirty()
	e.expire(s, e.floorAt(&now))
	s.mu.Unlock()
	return 0, false
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
		if !e.evictOldest() {
			// Every counted user is still being inserted by another
			// goroutine; let it finish.
			runtime.Gosched()
		}
	}
}

// oldest returns the least recently seen user held, first in the index's
// order, and its shard; only an engine with WithMaxUsers can tell. It reads
// each shard's oldest key without a lock (a word each: with hundreds of
// shards, taking every shard's read lock would cost each insert at the cap
// microseconds), then the first user of the shards holding the oldest key
// under their read locks. Under concurrent writes it is approximate.
func (e *Engine) oldest() (*shard, item, bool) {
	// One pass finds the oldest key, the first shard holding it, and how
	// many do; a second pass over 256 words cost an insert at the cap about
	// a tenth of its time.
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
		s := e.shards[i]
		s.mu.RLock()
		it, ok := s.tree.Min()
		s.mu.RUnlock()
		if ok && (victim == nil || itemLess(it, oldest)) {
			victim, oldest = s, it
		}
	}
	return victim, oldest, victim != nil
}

// evictOldest removes the least recently seen user of the whole engine: the
// oldest of the shard oldest chose, under its lock.
func (e *Engine) evictOldest() bool {
	victim, _, ok := e.oldest()
	if !ok {
		return false
	}
	victim.mu.Lock()
	defer victim.mu.Unlock()
	it, ok := victim.tree.Min()
	if ok {
		e.drop(victim, it)
		victim.evicted++
	}
	return ok
}

// drop removes a user from the index and the map. Has to be called with the
// lock of s held.
func (e *Engine) drop(s *shard, it item) {
	s.remove(it)
	e.users.Delete(it.id())
	e.metas.Delete(it.id())
	s.held.Add(-1)
	if e.maxUsers > 0 {
		e.n.Add(-1)
	}
	e.markDirty()
}

// expire removes a few users of s filed before slot floor, which retention
// has expired. Has to be called with the lock of s held.
//
// floor comes from the clock, as the queries' does, not from the newest time
// the shard was given: one TouchAt far ahead of the clock must not expire
// the users the clock still calls recent.
func (e *Engine) expire(s *shard, floor int64) {
	if e.retention == 0 {
		return
	}
	for range expireBudget {
		it, ok := s.tree.Min()
		if !ok || e.lay.slot(it) >= floor {
			return
		}
		e.drop(s, it)
		s.expired++
	}
}

// floor returns the oldest slot a query may see at ns: users filed before it
// have expired.
func (e *Engine) floor(ns int64) int64 {
	if e.retention == 0 {
		return math.MinInt64
	}
	return slotOf(ns-e.retention, e.lay.res)
}

// unread stands for a clock not read yet. Touch passes the time it read
// down to the paths that may need the clock (a move, an insert, SetMeta);
// TouchAt and SetMeta pass unread, and those paths read the clock, once,
// only when retention or the counters need it, so that fast paths never
// call it.
const unread = math.MaxInt64

// read returns *now, reading the clock into it first if it is unread.
func (e *Engine) read(now *int64) int64 {
	if *now == unread {
		*now = e.now().UnixNano()
	}
	return *now
}

// floorAt returns the oldest slot a query may see at *now; it reads the
// clock (into *now, if unread) only with retention on.
func (e *Engine) floorAt(now *int64) int64 {
	if e.retention == 0 {
		return math.MinInt64
	}
	return e.floor(e.read(now))
}

// floorNow returns the oldest slot a query may see now.
func (e *Engine) floorNow() int64 {
	now := int64(unread)
	return e.floorAt(&now)
}

// SetMeta attaches meta (for example a client IP or user agent) to a known
// user; the empty string removes it. It returns false if the user is unknown
// (or expired) or meta is longer than [MaxMetaLen]. Setting the meta a user
// already has takes no lock and allocates nothing (with retention on, it
// reads the clock); a change takes the user's shard lock, so meta never
// outlives its user.
func (e *Engine) SetMeta(id, meta string) bool {
	return e.setMeta(id, meta, unread)
}

// setMeta is SetMeta with the clock's reading, or unread.
func (e *Engine) setMeta(id, meta string, now int64) bool {
	if len(meta) > MaxMetaLen {
		return false
	}
	if cur, ok := e.metas.Load(id); ok && cur == meta {
		if e.retention == 0 {
			return true
		}
		// Known by its index slot, as under the lock below: a user that
		// expired and is being touched again has a new time but has not
		// yet been re-inserted without its meta.
		if ent, ok := e.users.Load(id); ok && e.lay.slot(itemOf(ent)) >= e.floorAt(&now) {
			return true
		}
	}
	floor := e.floorAt(&now)
	s := e.shardOf(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	ent, ok := e.users.Load(id)
	if !ok {
		return false
	}
	if it := itemOf(ent); e.lay.slot(it) < floor { // expired: gone, as if forgotten
		e.drop(s, it)
		s.expired++
		return false
	}
	if meta == "" {
		e.metas.Delete(id)
	} else {
		e.metas.Store(ent.id(len(id)), strings.Clone(meta))
	}
	e.markDirty()
	return true
}

// Get returns a user's activity, or false if the user is unknown or expired.
// Its LastSeen is exact.
func (e *Engine) Get(id string) (Activity, bool) {
	ent, ok := e.users.Load(id)
	if !ok {
		return Activity{}, false
	}
	ls := ent.lastSeen.Load()
	if e.retention > 0 && slotOf(ls, e.lay.res) < e.floorNow() {
		return Activity{}, false
	}
	return e.activity(id, ls), true
}

func (e *Engine) activity(id string, ls int64) Activity {
	meta, _ := e.metas.Load(id)
	return Activity{ID: id, LastSeen: time.Unix(0, ls).UTC(), Meta: meta}
}

// LastSeen returns a user's exact last-seen time, or false if the user is
// unknown or expired.
func (e *Engine) LastSeen(id string) (time.Time, bool) {
	a, ok := e.Get(id)
	return a.LastSeen, ok
}

// Len returns the number of users held, not counting expired ones. Without
// retention it adds one counter per shard, takes no lock, and is never above
// WithMaxUsers. With retention, it is a count over the retention window,
// which reads the shards one after the other: a user evicted from one shard
// while another is added to the next could be seen twice, so the count is
// capped by the users held.
func (e *Engine) Len() int {
	if e.retention == 0 {
		return e.held()
	}
	return min(e.countFrom(e.floorNow()), e.held())
}

// held returns the number of users the shards hold, expired ones included
// until they are removed. Added up shard by shard while users come and go,
// it can pass the cap by a user or two; it is clamped to it.
func (e *Engine) held() int {
	n := int64(0)
	for _, s := range e.shards {
		n += s.held.Load()
	}
	if e.maxUsers > 0 {
		n = min(n, e.maxUsers)
	}
	return int(n)
}

// Count returns the number of users seen within window of now:
// CountSince(now - window).
func (e *Engine) Count(window time.Duration) int {
	return e.CountSince(e.now().Add(-window))
}

// CountSince returns the number of users whose last-seen time is t or later,
// at the resolution: users seen in t's resolution slot before t count too.
// It reads per-slot counters, not users: O(shards x 300) word reads whatever
// the window holds, as long as t is within the index horizon (36h at the
// default resolution; see the package doc). The zero t counts everyone.
func (e *Engine) CountSince(t time.Time) int {
	from := int64(math.MinInt64)
	if ns, ok := unixNano(t); ok {
		from = slotOf(ns, e.lay.res)
	}
	if e.retention > 0 {
		from = max(from, e.floorNow())
	}
	return e.countFrom(from)
}

func (e *Engine) countFrom(from int64) int {
	total := 0
	for _, s := range e.shards {
		s.mu.RLock()
		n, complete := s.counts.since(from)
		if !complete {
			// The window reaches past the ring: walk the old users in it.
			end := e.lay.bound(s.counts.head - s.counts.horizon + 1)
			s.tree.AscendRange(e.lay.bound(from), end, func(item) bool {
				n++
				return true
			})
		}
		s.mu.RUnlock()
		total += n
	}
	return total
}

// Recent returns the users seen within window of now, newest first, at most
// limit of them (limit <= 0: all). It costs O(shards x (log n +
// limit/shards) + limit x log shards).
func (e *Engine) Recent(window time.Duration, limit int) []Activity {
	page, _ := e.Page(e.now().Add(-window), Cursor{}, limit)
	return page
}

// Page returns up to limit users seen since t (as in [Engine.CountSince]),
// newest first, starting strictly after the cursor after (the zero Cursor
// starts at the newest user). It also returns the cursor of the next page,
// which is the zero Cursor when this page was the last.
//
// Walking all pages yields every user that stays in the window exactly once,
// however many share one timestamp. A user touched between pages (or during
// a page that reads its shard twice; see the package doc) moves ahead of
// the cursor: it is not returned again, and is not returned at all if the
// walk had not reached it yet. A user removed (Forget, Prune, eviction,
// expiry) and then seen again is a new user to the walk. Users are ordered
// by index slot, newest first, and within a slot by the time each user
// entered it (in steps of 2ms at the default resolution, then by a hash of
// the ID), newest first. limit <= 0 returns all the rest.
func (e *Engine) Page(t time.Time, after Cursor, limit int) ([]Activity, Cursor) {
	w := window{from: math.MinInt64, limit: limit}
	if ns, ok := unixNano(t); ok {
		w.from = slotOf(ns, e.lay.res)
	}
	if e.retention > 0 {
		w.from = max(w.from, e.floorNow())
	}
	if after.set {
		w.after, w.has = item{key: after.key, ent: newEntry(after.id)}, true
	}
	if limit > 0 {
		w.limit = limit + 1 // one more, to know whether a next page exists
	}
	sc := scratchPool.Get().(*scratch)
	defer sc.release()
	sc.walk(e.shards, w)
	items := sc.merged
	var next Cursor
	if limit > 0 && len(items) > limit {
		items = items[:limit]
		last := items[limit-1]
		next = Cursor{key: last.key, id: last.id(), set: true}
	}
	out := make([]Activity, len(items))
	for i, it := range items {
		out[i] = e.activity(it.id(), it.ent.lastSeen.Load())
	}
	return out, next
}

// Since returns an iterator over the users seen since t, newest first, in
// the order of [Engine.Page]. It reads the index a page at a time and holds
// no lock while the loop body runs, with the same guarantees as paging.
func (e *Engine) Since(t time.Time) iter.Seq[Activity] {
	return func(yield func(Activity) bool) {
		var cur Cursor
		for {
			page, next := e.Page(t, cur, pageBatch)
			for _, a := range page {
				if !yield(a) {
					return
				}
			}
			if next.IsZero() {
				return
			}
			cur = next
		}
	}
}

// Forget removes a user. It returns false if the user was unknown or had
// expired.
func (e *Engine) Forget(id string) bool {
	floor := e.floorNow()
	s := e.shardOf(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	ent, ok := e.users.Load(id)
	if !ok {
		return false
	}
	it := itemOf(ent)
	e.drop(s, it)
	if e.lay.slot(it) < floor { // gone already
		s.expired++
		return false
	}
	s.forgotten++
	return true
}

// Prune removes every user last seen before t and returns how many it
// removed, not counting users that had expired. It holds each shard's lock
// for at most a batch of removals at a time.
func (e *Engine) Prune(t time.Time) int {
	ns, ok := unixNano(t)
	if !ok {
		return 0
	}
	floor := e.floorNow()
	limit := e.lay.bound(slotOf(ns, e.lay.res) + 1)
	removed := 0
	batch := make([]item, 0, pruneBatch)
	for _, s := range e.shards {
		// Each batch resumes where the last one stopped: users of t's slot
		// seen at t or later are passed over, not removed, and a walk
		// from the oldest each time would pass over them again and again
		// (quadratic in a slot of millions, at a coarse resolution).
		var from item // the last user a full batch removed; none at first
		for {
			batch = batch[:0]
			s.mu.Lock()
			visit := func(it item) bool {
				if it.ent.lastSeen.Load() < ns {
					batch = append(batch, it)
				}
				return len(batch) < pruneBatch
			}
			if from.ent == nil {
				s.tree.AscendLessThan(limit, visit)
			} else {
				s.tree.AscendRange(from, limit, visit)
			}
			for _, it := range batch {
				e.drop(s, it)
				if e.lay.slot(it) < floor {
					s.expired++
				} else {
					s.pruned++
					removed++
				}
			}
			s.mu.Unlock()
			if len(batch) < pruneBatch {
				break
			}
			from = batch[len(batch)-1]
		}
	}
	return removed
}

// Stats is a point-in-time summary of an engine's work, for monitoring.
type Stats struct {
	Users       int    // as Len
	Shards      int    // index shards
	Inserted    uint64 // users added
	Moved       uint64 // index moves: a known user's time entered a new slot
	Evicted     uint64 // users removed to stay within WithMaxUsers
	Expired     uint64 // expired users removed (by any write, Forget and Prune included)
	Forgotten   uint64 // users removed by Forget
	Pruned      uint64 // users removed by Prune
	RejectedIDs uint64 // Touch calls with an empty or too long ID

	SnapshotsSaved uint64 // successful SaveFile calls, the saver's included
	SnapshotErrors uint64 // failed ones
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
	}
	for _, s := range e.shards {
		s.mu.RLock()
		st.Inserted += s.inserted
		st.Moved += s.moved
		st.Evicted += s.evicted
		st.Expired += s.expired
		st.Forgotten += s.forgotten
		st.Pruned += s.pruned
		s.mu.RUnlock()
	}
	return st
}

// Close stops the background saver of an engine made by [Open] and writes a
// final snapshot if anything changed since the last, returning that save's
// error. It is idempotent (later calls return nil) and the engine keeps
// answering after it; for an engine made by New it does nothing.
func (e *Engine) Close() error {
	sv := e.saver
	if sv == nil {
		return nil
	}
	var err error
	sv.closeOnce.Do(func() {
		close(sv.stop)
		<-sv.done
		err = e.saveIfDirty()
	})
	return err
}
