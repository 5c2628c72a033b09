// Package redispresence keeps presence in Redis, for a fleet of servers that
// needs one global view of who is online. A [Store] is a
// middleware.Recorder (and MetaRecorder) and a presencehttp.Querier, so the
// middleware and the dashboard work with it unchanged.
//
//	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"10.0.0.5:6379"}})
//	store, err := redispresence.New(rdb, redispresence.WithRetention(24*time.Hour))
//	defer store.Close(ctx)
//	track := middleware.Track(store, middleware.FromContext(userKey))
//
// # Write-behind
//
// TouchAt does not talk to Redis: it raises the user's time in a local
// buffer (a map probe and a CAS for a user already buffered), and a flusher
// sends what changed every interval (default 1s) as pipelined
// "ZADD key GT score member" batches. Redis sees one write per active user
// per interval, however many requests the user made: [Stats] reports the
// ratio. The price is that reads, which go to Redis, lag the newest touches
// by up to one interval (plus the flush itself); call [Store.Flush] to send
// at once.
//
// # Layout
//
// Users are spread by a hash of their ID over K shards (default 16): sorted
// sets "<prefix>:{n}", scored by last-seen time in Unix microseconds, with
// meta in hashes "<prefix>:meta:{n}" beside them. A room is a sorted set
// "<prefix>:room:{n}<name>" of its members, in the shard n of its name;
// the shard's rooms are indexed by latest activity in "<prefix>:rooms:{n}",
// and its users' memberships listed in "<prefix>:in:{n}" (members "id NUL
// room"). Every key of shard n carries the hash tag {n}, so each script and
// multi-key read of a shard runs in one Redis Cluster slot; no key is hot,
// and the shards spread over a cluster. Queries send one command per set in one pipeline
// and merge: ZCOUNT for counts, ZREVRANGEBYSCORE with a cursor for pages
// (and a Lua script when many users share the cursor's microsecond: the
// server must allow EVALSHA), ZSCORE and HGET for one user. Redis is the
// source of truth: the Store keeps no copy of it to read from.
//
// # Faults
//
// When Redis is down or slow, TouchAt still never blocks and never fails:
// the buffer keeps each user's newest time, up to [WithMaxBuffered] users
// (default 1M). A user not already buffered beyond that is dropped, and
// counted in Stats.Dropped. Flushes time out ([WithTimeout], default 2s),
// back off up to 30s, and report to [WithOnError] and Stats; nothing
// buffered is lost, and everything is written once Redis answers again.
// After a failed flush or a connection to a new address (a failover), the
// next flush also sends the two last good batches again (Stats.Resent): a
// new master may lack writes the old one acknowledged but did not replicate.
// What Leave, Forget, the room caps and the rooms' retention removed leaves
// tombstones in "<prefix>:gone:{n}" for ten minutes, and a resend leaves out
// the times they are newer than, so that one Store's resend does not bring
// back what another removed (a touch still buffered from before the removal
// does, as any touch does). Queries fail as soon as their context or the
// timeout says so: for contexts to cut network waits short, create the
// client with ContextTimeoutEnabled (without it, go-redis bounds them by its
// own read and write timeouts).
//
// # Rooms
//
// [Store.TouchInAt] records a user in a room, in the same buffer as its
// global time: a membership costs one write to its room per interval, and
// one to its user's list when it enters the buffer. [Store.Room] is a
// read view of one room (a presencehttp.Querier, so the API and the
// dashboard can show it); [Store.Rooms] lists the busiest, [Store.RoomsOf]
// a user's, [Store.Leave] ends a membership. WithMaxRooms and
// WithMaxRoomsPerUser cap them; retention trims them as it trims users.
//
// # Events
//
// With [WithEvents] every Store publishes the fleet's presence changes in
// one Redis Stream per shard ("<prefix>:events:{n}", capped with XADD MAXLEN
// ~): a flush writes through a script that publishes Online (and Join) for
// each user it raises from beyond the online window, and one Store at a
// time, holding a lease ("<prefix>:sweeper", SET NX PX), moves each shard's
// window edge every interval and publishes Offline (and Leave) for those it
// passes; Leave, Forget and the room caps publish Offline and Leave for the
// online users they remove. Each shard keeps its edge ("<prefix>:edge:{n}"),
// which both scripts read, so every Online is followed by one Offline
// whichever Stores' clocks decided them. Every Store with subscribers
// ([Store.Subscribe]) reads every stream from where it last read; a gap in a
// stream's sequence numbers (events trimmed before it read them, or lost in
// a failover) reaches its subscribers as an Overflow. [Store.Hold] keeps a
// user online from any number of Stores, counted once, for long-lived
// connections.
//
// # Retention
//
// With [WithRetention], every Store trims users older than the retention
// from the sets (and their meta) every minute. Trimming is idempotent, so
// many servers doing it is harmless.
package redispresence

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/maphash"
	"log/slog"
	"math"
	"math/bits"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/middleware"
	"github.com/onlinenow/presence/presencehttp"
	"github.com/puzpuzpuz/xsync/v3"
	"github.com/redis/go-redis/v9"
)

// Option configures a Store.
type Option func(*config)

type config struct {
	prefix      string
	keys        int
	interval    time.Duration
	timeout     time.Duration
	maxBuffered int
	retention   time.Duration
	maxRooms    int
	perUser     int
	window      time.Duration // WithEvents; 0: no events
	poll        time.Duration
	streamLen   int
	onError     func(error)
	now         func() time.Time
	log         *slog.Logger
}

// WithPrefix sets the prefix of the Redis keys (default "presence").
func WithPrefix(p string) Option { return func(c *config) { c.prefix = p } }

// WithKeys sets how many sorted sets the users are spread over (default 16).
// Every Store sharing the data must use the same number.
func WithKeys(k int) Option { return func(c *config) { c.keys = k } }

// WithFlushInterval sets how often buffered touches are sent (default 1s).
func WithFlushInterval(d time.Duration) Option { return func(c *config) { c.interval = d } }

// WithTimeout bounds each flush, trim and query (default 2s; a flush gets
// 10µs more for each member it writes); a query's own context may end it
// sooner.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithMaxBuffered bounds how many users the buffer holds while Redis is
// unreachable (default 1,000,000). Touches of users not already buffered
// beyond it are dropped and counted in Stats.Dropped.
func WithMaxBuffered(n int) Option { return func(c *config) { c.maxBuffered = n } }

// WithRetention makes the Store trim users idle longer than d from Redis
// every minute (0, the default, keeps them).
func WithRetention(d time.Duration) Option { return func(c *config) { c.retention = d } }

// WithMaxRooms caps the number of rooms, as the engine's option does: a
// flush that makes rooms beyond the cap ends the least recently active
// rooms, with their memberships. Zero (the default) means no cap. Every
// Store sharing the data should use the same cap.
func WithMaxRooms(n int) Option { return func(c *config) { c.maxRooms = max(n, 0) } }

// WithMaxRoomsPerUser caps the rooms one user is in: a flush that puts a
// user in more leaves the rooms it joined first (by the time of the touch
// that brought it into a Store's buffer, which is when the user's room
// list is written; the engine leaves the least recently active). Zero (the
// default) means no cap.
func WithMaxRoomsPerUser(n int) Option { return func(c *config) { c.perUser = max(n, 0) } }

// WithOnError sets a function called with each failed flush or trim. It must
// not block for long.
func WithOnError(f func(error)) Option { return func(c *config) { c.onError = f } }

// WithClock sets the clock the Store reads: for trimming (what retention
// keeps and when the flusher trims) and for when a flushed user has been
// idle long enough to leave the buffer; nil selects time.Now.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithLogger makes the flusher log to l: failed flushes and trims at Error
// (with the keys involved), and the first good flush after failures at
// Info. Nil, the default, logs nothing.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// Stats counts a Store's work.
type Stats struct {
	Touches     uint64 // TouchAt calls accepted
	Sent        uint64 // ZADD members sent to Redis, not counting Resent
	Buffered    int    // users in the buffer now
	Pending     int    // of which with a change not yet sent
	Dropped     uint64 // touches refused because the buffer was full
	Flushes     uint64 // successful flushes
	FlushErrors uint64 // failed flushes and trims
	Trimmed     uint64 // users removed by retention

	FlushCalls uint64        // flushes that had something to send, successful or failed
	Resent     uint64        // ZADD members sent again after a failed flush or a connection to a new master
	FlushTime  time.Duration // time those spent
	LastFlush  time.Time     // when the last successful flush ended; zero before one
}

// entryKey names a buffer entry: a user (room "") or a membership.
type entryKey struct{ room, id string }

var entrySeed = maphash.MakeSeed()

// hashEntry mixes two string hashes: the runtime's hash of a struct of
// strings costs more.
func hashEntry(k entryKey, _ uint64) uint64 {
	return maphash.String(entrySeed, k.id) ^ bits.RotateLeft64(maphash.String(entrySeed, k.room), 29)
}

// pending is one buffered user or membership. ns is the newest time touched; sent the
// newest time Redis acknowledged. ns is deadNS once the entry has left the
// buffer, which sends a late TouchAt holding it to insert a new one.
type pending struct {
	ns       atomic.Int64
	sent     atomic.Int64
	meta     atomic.Pointer[string]
	metaSent atomic.Pointer[string]
}

const (
	deadNS    = math.MinInt64
	neverSent = math.MinInt64 + 1 // sent of an entry not flushed yet
)

var (
	_ presencehttp.Querier    = (*Store)(nil)
	_ middleware.MetaRecorder = (*Store)(nil)
)

// Store is the Redis backend. It is safe for concurrent use; its buffer is
// lock-light (a concurrent map and atomics), and one goroutine flushes.
type Store struct {
	cfg config
	rdb redis.UniversalClient
	buf *xsync.MapOf[entryKey, *pending]
	n   atomic.Int64 // entries in buf

	userKeys []string // the users' sorted sets, by shardOf
	ev       *events  // nil without WithEvents

	heldMu sync.Mutex
	held   map[entryKey]int // Hold's counts, of this Store

	touches                                      *xsync.Counter // striped: TouchAt from many cores does not contend
	sent, dropped, flushes, flushErrors, trimmed atomic.Uint64
	flushCalls, resent                           atomic.Uint64
	// resend asks the next flush to send the two last good flushes' own
	// times again: set by a failed flush and by a connection to a new address (a
	// failover or a restart may have lost writes Redis acknowledged but did
	// not replicate; the connection may have been dialed during the last
	// flush, after the one it lost). last and prev are those batches, per
	// set, without what they resent themselves, so they stay two
	// intervals' worth; the flusher's own. A resend leaves out what a
	// tombstone says was removed since (see goneFor), and batches older.
	resend                atomic.Bool
	last, prev            map[setRef][]redis.Z
	batchAt               [2]int64 // when last and prev were sent, µs by the clock
	flushNanos, lastFlush atomic.Int64

	flushMu   sync.Mutex      // one flush at a time
	ctx       context.Context // cancelled by Close: stops the loop and its flush
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// New returns a Store writing to rdb and starts its flusher. It checks that
// Redis answers (within the timeout) and supports ZADD GT (Redis 6.2+).
func New(rdb redis.UniversalClient, opts ...Option) (*Store, error) {
	c := config{prefix: "presence", keys: 16, interval: time.Second, timeout: 2 * time.Second, maxBuffered: 1_000_000, now: time.Now,
		poll: 50 * time.Millisecond, streamLen: 100_000}
	for _, o := range opts {
		o(&c)
	}
	if c.keys <= 0 || c.keys > 4096 {
		return nil, fmt.Errorf("redispresence: WithKeys(%d): want 1 to 4096", c.keys)
	}
	if c.interval <= 0 || c.timeout <= 0 || c.maxBuffered <= 0 || c.poll <= 0 || c.streamLen <= 0 || c.window < 0 {
		return nil, errors.New("redispresence: interval, timeout, max buffered, event poll and stream length must be positive, the window not negative")
	}
	if c.now == nil {
		c.now = time.Now
	}
	s := &Store{
		cfg: c, rdb: rdb, buf: xsync.NewMapOfWithHasher[entryKey, *pending](hashEntry),
		touches: xsync.NewCounter(), done: make(chan struct{}), held: map[entryKey]int{},
	}
	for k := range c.keys {
		s.userKeys = append(s.userKeys, s.key(k))
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	probe := s.key(0) + ":probe"
	if err := rdb.ZAddGT(ctx, probe, redis.Z{Score: 1, Member: "x"}).Err(); err != nil {
		return nil, fmt.Errorf("redispresence: Redis must answer ZADD GT (6.2+): %w", err)
	}
	rdb.Del(ctx, probe)
	s.watchDials()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.loop()
	if c.window > 0 {
		s.ev = newEvents(s)
		s.ev.wg.Add(1)
		go s.ev.sweeper()
	}
	return s, nil
}

// watchDials makes a first connection to an address of Redis, from now on,
// ask the next flush to send the two last batches again: after a failover
// go-redis dials the new master, which may lack the old one's last writes
// (replication is asynchronous). ZADD GT makes the second write harmless
// where it was not lost. A cluster client's nodes are watched each, those
// it has and those it finds later (a promoted replica). A Redis restarted
// at the same address is not a new one: what it lost is resent only if a
// flush failed meanwhile.
func (s *Store) watchDials() {
	h := &dialWatch{s: s}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.timeout)
	defer cancel()
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		c.OnNewNode(func(n *redis.Client) { n.AddHook(h) })
		// A PING each, so that the masters known now are not new later.
		c.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error { n.AddHook(h); return n.Ping(ctx).Err() })
	default:
		s.rdb.AddHook(h)
		s.rdb.Ping(ctx)
	}
}

// dialWatch asks for a resend when go-redis dials an address it had not:
// a new master. A new connection to a known one (a pool growing, a
// reconnect after a network error) is none, which keeps a resend from
// writing back, needlessly, a membership another Store's Leave removed.
type dialWatch struct {
	s    *Store
	seen sync.Map // addresses dialed
}

func (w *dialWatch) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err == nil {
			if _, known := w.seen.LoadOrStore(addr, true); !known {
				w.s.resend.Store(true)
			}
		}
		return conn, err
	}
}
func (*dialWatch) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (*dialWatch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// key is sorted set n's name; metaKey its meta hash's.
func (s *Store) key(n int) string     { return s.cfg.prefix + ":{" + strconv.Itoa(n) + "}" }
func (s *Store) metaKey(n int) string { return s.cfg.prefix + ":meta:{" + strconv.Itoa(n) + "}" }

// shardOf picks a user's set by a CRC-32C of the ID: every Store sharing
// the data must agree, so the hash is fixed, not seeded per process.
func (s *Store) shardOf(id string) int {
	return int(crc32.Checksum(unsafe.Slice(unsafe.StringData(id), len(id)), castagnoli) % uint32(s.cfg.keys))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// TouchAt records activity by id at the given time in the local buffer; the
// flusher sends it. It never blocks on Redis. Empty or too long IDs (over
// presence.MaxIDLen) and the zero time are ignored.
func (s *Store) TouchAt(id string, at time.Time) {
	if id == "" || len(id) > presence.MaxIDLen || at.IsZero() {
		return
	}
	s.touches.Inc()
	s.raise(entryKey{id: id}, at.UnixNano())
}

// raise sets k's buffered time to ns unless it is newer already: for an
// entry buffered, one map probe and a CAS.
func (s *Store) raise(k entryKey, ns int64) {
	for {
		p, ok := s.buf.Load(k)
		if !ok {
			if !s.insert(k, ns) {
				continue // raced with a removal; try again
			}
			return
		}
		cur := p.ns.Load()
		for cur != deadNS && ns > cur && !p.ns.CompareAndSwap(cur, ns) {
			cur = p.ns.Load()
		}
		if cur != deadNS {
			return
		}
	}
}

// insert adds a buffer entry for k, or raises one added meanwhile. It
// returns false if it found a dead entry (the caller retries).
func (s *Store) insert(k entryKey, ns int64) bool {
	// A room's name is checked when its membership enters the buffer, not
	// at every touch of it.
	if k.room != "" && !presence.ValidRoom(k.room) {
		return true
	}
	if s.n.Load() >= int64(s.cfg.maxBuffered) {
		s.dropped.Add(1)
		return true
	}
	ok := true
	// A copy for the map to keep: the caller's strings may alias a buffer it
	// reuses (a request's bytes).
	s.buf.Compute(entryKey{strings.Clone(k.room), strings.Clone(k.id)}, func(old *pending, loaded bool) (*pending, bool) {
		if loaded {
			if old.ns.Load() == deadNS {
				ok = false
				return old, false
			}
			for cur := old.ns.Load(); ns > cur && !old.ns.CompareAndSwap(cur, ns); cur = old.ns.Load() {
			}
			return old, false
		}
		p := new(pending)
		p.ns.Store(ns)
		p.sent.Store(neverSent)
		s.n.Add(1)
		return p, false
	})
	return ok
}

// drop removes k's entry from the buffer, and reports whether it held one.
// A TouchAt racing with it either lands before (and is dropped) or inserts
// a new entry.
func (s *Store) drop(k entryKey) bool {
	p, ok := s.buf.LoadAndDelete(k)
	if ok {
		p.ns.Store(deadNS)
		s.n.Add(-1)
	}
	return ok
}

// SetMeta buffers meta for a user touched through this Store; it is sent
// with the next flush. It returns false for a user not in the buffer or
// meta longer than presence.MaxMetaLen.
func (s *Store) SetMeta(id, meta string) bool {
	if len(meta) > presence.MaxMetaLen {
		return false
	}
	p, ok := s.buf.Load(entryKey{id: id})
	if !ok || p.ns.Load() == deadNS {
		return false
	}
	if cur := p.meta.Load(); cur != nil && *cur == meta {
		return true
	}
	m := strings.Clone(meta)
	p.meta.Store(&m)
	return true
}

// Flush sends every buffered change to Redis now, in one pipeline, and
// returns its error. Users and memberships flushed and then idle for a few
// intervals leave the buffer.
func (s *Store) Flush(ctx context.Context) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.touchHeld()
	type change struct {
		p    *pending
		ns   int64
		meta *string
	}
	var changes []change
	byKey := map[setRef][]redis.Z{} // by sorted set: the users', a room's, a user's rooms, the index
	metas := make([][]any, s.cfg.keys)
	roomTimes := map[string]int64{} // each room's newest time in this flush, for the index
	var inIDs []string              // the users whose room lists are written
	idleBefore := s.cfg.now().Add(-3 * s.cfg.interval).UnixNano()
	s.buf.Range(func(ek entryKey, p *pending) bool {
		ns, sent := p.ns.Load(), p.sent.Load()
		meta, metaSent := p.meta.Load(), p.metaSent.Load()
		if ns == deadNS {
			return true
		}
		if ns == sent && meta == metaSent {
			// Clean: let idle entries go, unless a touch comes in first.
			if ns < idleBefore && p.ns.CompareAndSwap(ns, deadNS) {
				removed := false
				s.buf.Compute(ek, func(old *pending, loaded bool) (*pending, bool) {
					removed = loaded && old == p
					return old, !loaded || removed // never store a nil; keep a newer entry
				})
				if removed {
					s.n.Add(-1)
				}
			}
			return true
		}
		if us := float64(ns / 1000); ns != sent && ek.room == "" {
			key := setRef{kind: usersSet, n: s.shardOf(ek.id)}
			byKey[key] = append(byKey[key], redis.Z{Score: us, Member: ek.id})
		} else if ns != sent {
			key, in := setRef{roomSet, s.shardOf(ek.room), ek.room}, setRef{kind: inSet, n: s.shardOf(ek.id)}
			byKey[key] = append(byKey[key], redis.Z{Score: us, Member: ek.id})
			if sent == neverSent {
				// The membership list is written when the entry is new (a
				// join, or a touch after idling out of the buffer), not at
				// every flush: it names the rooms; their times are the
				// rooms' own.
				inIDs = append(inIDs, ek.id)
				byKey[in] = append(byKey[in], redis.Z{Member: inMember(ek.id, ek.room)})
			}
			roomTimes[ek.room] = max(roomTimes[ek.room], ns/1000)
		}
		if meta != metaSent && meta != nil {
			k := s.shardOf(ek.id)
			metas[k] = append(metas[k], ek.id, *meta)
		}
		changes = append(changes, change{p, ns, meta})
		return true
	})
	for room, us := range roomTimes {
		key := setRef{kind: indexSet, n: s.shardOf(room)}
		byKey[key] = append(byKey[key], redis.Z{Score: float64(us), Member: room})
	}
	resent := 0
	all := byKey // this flush's own times, and the resent ones
	if s.resend.Swap(false) {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
		gone, err := s.buried(rctx)
		cancel()
		if err != nil {
			s.flushErrors.Add(1)
			s.resend.Store(true)
			return fmt.Errorf("redispresence: flush under %s: %w", s.cfg.prefix, err)
		}
		all = make(map[setRef][]redis.Z, len(byKey))
		for key, zs := range byKey {
			all[key] = slices.Clip(zs) // appends below copy, not write into byKey's arrays
		}
		for i, batch := range []map[setRef][]redis.Z{s.last, s.prev} {
			if s.batchAt[i] < s.cfg.now().Add(-goneFor).UnixMicro() {
				continue // older than the tombstones: not lost by a failover now
			}
			for key, zs := range batch {
				// A newer time of the same member in the batch wins anyway (GT).
				for _, z := range zs {
					if alive(gone, key, z) {
						all[key] = append(all[key], z)
					}
				}
			}
		}
		for key, zs := range all {
			resent += len(zs) - len(byKey[key])
		}
	}
	if len(changes) == 0 && resent == 0 {
		return nil
	}
	start := time.Now()
	defer func() {
		s.flushCalls.Add(1)
		s.flushNanos.Add(int64(time.Since(start)))
	}()
	size := 0
	for _, zs := range all {
		size += len(zs)
	}
	// The deadline grows with the batch, 10µs a member (a Redis core
	// writes one in about 3): a backlog after an outage is larger than one
	// interval's, and a flush that always timed out would never send it.
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout+time.Duration(size)*10*time.Microsecond)
	defer cancel()
	pipe := s.rdb.Pipeline()
	members := 0
	var newRooms []*redis.IntCmd // ZADDs to the room index: how many rooms they added
	var scripted [][]any         // with events: by shard, what the publish script writes
	if s.ev != nil {
		scripted = make([][]any, s.cfg.keys)
	}
	for ref, zs := range all {
		if scripted != nil && (ref.kind == usersSet || ref.kind == roomSet) {
			// The script writes the users' and rooms' sets and publishes
			// who came online. It comes after the index's ZADD of its
			// shard in the pipeline (both go to the shard's node in
			// order), so that a sweep finds the rooms it wrote to.
			for _, z := range zs {
				scripted[ref.n] = append(scripted[ref.n], ref.name, z.Member, int64(z.Score))
			}
			members += len(zs)
			continue
		}
		key := s.keyOf(ref)
		for len(zs) > 0 {
			batch := zs[:min(len(zs), 512)]
			zs = zs[len(batch):]
			cmd := pipe.ZAddGT(ctx, key, batch...)
			if ref.kind == indexSet {
				newRooms = append(newRooms, cmd)
			}
			members += len(batch)
		}
	}
	for n, args := range scripted {
		for len(args) > 0 {
			batch := args[:min(len(args), 3*512)]
			args = args[len(batch):]
			s.ev.publish(ctx, pipe, n, batch)
		}
	}
	for k, m := range metas {
		if len(m) > 0 {
			pipe.HSet(ctx, s.metaKey(k), m...)
		}
	}
	var cards []*redis.IntCmd
	if s.cfg.perUser > 0 {
		inIDs = slices.Compact(slices.Sorted(slices.Values(inIDs)))
		for _, id := range inIDs {
			lo, hi := inRange(id)
			cards = append(cards, pipe.ZLexCount(ctx, s.inKey(id), lo, hi))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		s.flushErrors.Add(1)
		// Part of the batch may have reached a master about to be
		// replaced: the next flush sends the last good batches again.
		s.resend.Store(true)
		return fmt.Errorf("redispresence: flush of %d entries under %s: %w", len(changes), s.cfg.prefix, err)
	}
	for _, c := range changes {
		// Newer touches made during the flush stay pending: sent only
		// moves up to what this flush wrote.
		for cur := c.p.sent.Load(); c.ns > cur && !c.p.sent.CompareAndSwap(cur, c.ns); cur = c.p.sent.Load() {
		}
		c.p.metaSent.Store(c.meta)
	}
	if len(changes) > 0 {
		s.last, s.prev = byKey, s.last
		s.batchAt = [2]int64{s.cfg.now().UnixMicro(), s.batchAt[0]}
	}
	s.sent.Add(uint64(members - resent))
	s.resent.Add(uint64(resent))
	s.flushes.Add(1)
	s.lastFlush.Store(time.Now().UnixNano())
	added := int64(0)
	for _, c := range newRooms {
		added += c.Val()
	}
	return errors.Join(s.capMemberships(ctx, inIDs, cards), s.capRooms(ctx, added))
}

// loop flushes every interval, backing off while flushes fail, and trims
// every minute when retention is set.
func (s *Store) loop() {
	defer close(s.done)
	wait := s.cfg.interval
	nextTrim := s.cfg.now()
	failed := 0 // flushes failed in a row
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		// s.ctx also cancels a flush in progress when Close is called; Close
		// then flushes again itself.
		if err := s.Flush(s.ctx); err != nil {
			if s.ctx.Err() != nil {
				return
			}
			s.report(err)
			failed++
			wait = min(2*wait, 30*time.Second)
		} else {
			if failed > 0 && s.cfg.log != nil {
				s.cfg.log.Info("redispresence: flushing again", "failed_flushes", failed)
			}
			failed = 0
			wait = s.cfg.interval
			if s.cfg.retention > 0 && !s.cfg.now().Before(nextTrim) {
				if err := s.Trim(s.ctx); err != nil && s.ctx.Err() == nil {
					s.report(err)
				}
				nextTrim = s.cfg.now().Add(time.Minute)
			}
		}
		t.Reset(wait)
	}
}

func (s *Store) report(err error) {
	if s.cfg.log != nil {
		s.cfg.log.Error("redispresence: write to Redis failed", "prefix", s.cfg.prefix, "err", err)
	}
	if f := s.cfg.onError; f != nil {
		f(err)
	}
}

// Trim removes users idle longer than the retention, and their meta, from
// every set. It is idempotent; the Store runs it every minute.
func (s *Store) Trim(ctx context.Context) error {
	if s.cfg.retention <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
	defer cancel()
	cutoff := "(" + strconv.FormatInt(s.cfg.now().Add(-s.cfg.retention).UnixMicro(), 10)
	for k := range s.cfg.keys {
		for {
			old, err := s.rdb.ZRangeByScore(ctx, s.key(k), &redis.ZRangeBy{Min: "-inf", Max: cutoff, Count: 1000}).Result()
			if err != nil {
				s.flushErrors.Add(1)
				return fmt.Errorf("redispresence: trim %s: %w", s.key(k), err)
			}
			if len(old) == 0 {
				break
			}
			pipe := s.rdb.Pipeline()
			pipe.ZRem(ctx, s.key(k), anys(old)...)
			pipe.HDel(ctx, s.metaKey(k), old...)
			if _, err := pipe.Exec(ctx); err != nil {
				s.flushErrors.Add(1)
				return fmt.Errorf("redispresence: trim %s: %w", s.key(k), err)
			}
			s.trimmed.Add(uint64(len(old)))
		}
	}
	return s.trimRooms(ctx, cutoff)
}

// CountSince returns how many users Redis holds with a last-seen time at t
// or later: one ZCOUNT per set, in one pipeline.
func (s *Store) CountSince(ctx context.Context, t time.Time) (int, error) {
	return s.count(ctx, s.userKeys, t)
}

// count sums the members of the sets keys scored t or later.
func (s *Store) count(ctx context.Context, keys []string, t time.Time) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
	defer cancel()
	min := strconv.FormatInt(t.UnixMicro(), 10)
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(keys))
	for k, key := range keys {
		cmds[k] = pipe.ZCount(ctx, key, min, "+inf")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("redispresence: count: %w", err)
	}
	n := 0
	for _, c := range cmds {
		n += int(c.Val())
	}
	return n, nil
}

// cursor is a position in a newest-first walk: the (score, member) of the
// last user returned.
type cursor struct {
	score  int64
	member string
}

func (c cursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.score, 10) + ":" + c.member))
}

// maxCursorLen is the longest cursor before base64: an int64's digits, a
// colon and an ID.
const maxCursorLen = 20 + 1 + presence.MaxIDLen

// errNotCursor is what Page says of any text it did not hand out.
var errNotCursor = fmt.Errorf("%w: not a cursor", presencehttp.ErrBadCursor)

func parseCursor(s string) (cursor, bool, error) {
	if s == "" {
		return cursor{}, false, nil
	}
	// Checked before decoding, so that a long one allocates nothing in
	// proportion to its length.
	if len(s) > base64.RawURLEncoding.EncodedLen(maxCursorLen) {
		return cursor{}, false, errNotCursor
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, false, errNotCursor
	}
	num, member, ok := strings.Cut(string(raw), ":")
	score, err := strconv.ParseInt(num, 10, 64)
	if !ok || err != nil || member == "" || len(member) > presence.MaxIDLen {
		return cursor{}, false, errNotCursor
	}
	return cursor{score, member}, true, nil
}

// Page returns up to limit users seen since t, newest first, after the
// cursor ("" for the first page), and the next page's cursor ("" after the
// last). It asks each set for about twice its share of the page in one
// pipeline, and again, for twice as many, each set all of whose users made
// the page, then merges. Each ask goes on after the last user fetched from
// that set (after the cursor, at first), so a walk never returns an
// untouched user twice or skips one, however the sets change between pages
// or between the asks of one page; a user touched meanwhile may move ahead
// of the walk. A page costs O(log n + k) per set, and O(log T x log n) more
// when T users share the cursor's microsecond (see fetch). limit <= 0 returns
// all the rest, as the engine does.
func (s *Store) Page(ctx context.Context, t time.Time, cur string, limit int) ([]presence.Activity, string, error) {
	return s.page(ctx, s.userKeys, t, cur, limit)
}

// page walks the sets keys as Page describes.
func (s *Store) page(ctx context.Context, keys []string, t time.Time, cur string, limit int) ([]presence.Activity, string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
	defer cancel()
	after, has, err := parseCursor(cur)
	if err != nil {
		return nil, "", err
	}
	if limit <= 0 {
		limit = math.MaxInt32 // all, as the engine's Page
	}
	lo := strconv.FormatInt(t.UnixMicro(), 10)
	// Ask each set for a fair share of the page at first, not a whole page
	// (16 sets x 51 users to return 50 was most of the work). The merge is
	// exact once every set that may hold more still has a fetched user below
	// the cut; a set whose fetched users all made the cut is asked again, for
	// twice as many, until that holds.
	want := limit + 1 // one more, to know whether a next page exists
	lists := make([][]redis.Z, len(keys))
	more := make([]bool, len(keys)) // the set may hold users not fetched yet
	tied := make([]bool, len(keys)) // its last ask read only users tied with the cursor
	batch := make([]int64, len(keys))
	todo := make([]int, len(keys))
	for k := range todo {
		todo[k] = k
		batch[k] = int64(min(want, 2*((want+len(keys)-1)/len(keys))+2))
	}
	var heads []int
	for round := 0; ; round++ {
		if len(todo) > 0 {
			if err := s.fetch(ctx, keys, todo, lo, after, has, int64(want), lists, batch, more, tied); err != nil {
				return nil, "", fmt.Errorf("redispresence: page: %w", err)
			}
		}
		// Merge newest first (score, then member, both descending) up to want.
		heads = make([]int, len(lists))
		taken, lastSet := 0, -1 // the set of the cut's last user
		for ; taken < want; taken++ {
			best := -1
			for k, l := range lists {
				if heads[k] < len(l) && (best < 0 || zLess(lists[best][heads[best]], l[heads[k]])) {
					best = k
				}
			}
			if best < 0 {
				break
			}
			heads[best]++
			lastSet = best
		}
		todo = todo[:0]
		for k, l := range lists {
			if more[k] && heads[k] == len(l) && !(taken == want && k == lastSet) {
				// All of it made the cut, so it may hold users that belong
				// above the cut's last, unless that last is its own.
				todo = append(todo, k)
			}
		}
		if len(todo) == 0 {
			break
		}
	}
	// The merge above picked want users; return the first limit of them.
	var out []presence.Activity
	pos := make([]int, len(lists))
	for len(out) < limit {
		best := -1
		for k, l := range lists {
			if pos[k] < heads[k] && (best < 0 || zLess(lists[best][pos[best]], l[pos[k]])) {
				best = k
			}
		}
		if best < 0 {
			break
		}
		z := lists[best][pos[best]]
		pos[best]++
		m, _ := z.Member.(string)
		out = append(out, presence.Activity{ID: m, LastSeen: time.UnixMicro(int64(z.Score)).UTC()})
	}
	next := ""
	picked := 0
	for k := range heads {
		picked += heads[k]
	}
	if picked > limit { // a user beyond this page exists
		last := out[len(out)-1]
		next = cursor{last.LastSeen.UnixMicro(), last.ID}.String()
	}
	if err := s.fillMeta(ctx, out); err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// fetch asks each set in todo, in one pipeline, for up to batch[k] users
// seen at lo or later, newest first, after the last user in lists[k] (or
// after the page's cursor, for a set not asked yet), and appends them to
// lists[k]. It sets more[k] when the set may hold more, and doubles
// batch[k], up to the page's size, for the next ask.
//
// An ask after a cursor is a range read by score from the cursor's time,
// less the users tied with it that came before it: as cheap as the first
// page's. When those fill a whole ask (many users sharing one microsecond,
// as TouchAt of whole seconds makes them), reading them again on every page would cost O(T) per page,
// so the set's next ask runs pageScript instead, which skips them in
// O(log T) (through a script, a read of 16 sets took 40% longer).
func (s *Store) fetch(ctx context.Context, keys []string, todo []int, lo string, after cursor, has bool, want int64, lists [][]redis.Z, batch []int64, more, tied []bool) error {
	type ask struct {
		c      cursor
		has    bool
		script *redis.Cmd
		plain  *redis.ZSliceCmd
	}
	asks := make([]ask, len(todo))
	run := func(eval func(context.Context, redis.Scripter, []string, ...any) *redis.Cmd) error {
		pipe := s.rdb.Pipeline()
		for i, k := range todo {
			asks[i] = ask{c: after, has: has}
			a := &asks[i]
			if l := lists[k]; len(l) > 0 {
				a.c, a.has = cursor{int64(l[len(l)-1].Score), l[len(l)-1].Member.(string)}, true
			}
			switch {
			case a.has && tied[k]:
				a.script = eval(ctx, pipe, []string{keys[k]}, lo, batch[k], a.c.score, a.c.member)
			default:
				hi := "+inf"
				if a.has {
					hi = strconv.FormatInt(a.c.score, 10) // inclusive: the ties before the cursor are passed over below
				}
				a.plain = pipe.ZRevRangeByScoreWithScores(ctx, keys[k], &redis.ZRangeBy{Min: lo, Max: hi, Count: batch[k]})
			}
		}
		_, err := pipe.Exec(ctx)
		if errors.Is(err, redis.Nil) {
			err = nil
		}
		return err
	}
	err := run(pageScript.EvalSha)
	if redis.HasErrorPrefix(err, "NOSCRIPT") { // not cached (a restart, SCRIPT FLUSH): send it whole
		err = run(pageScript.Eval)
	}
	if err != nil {
		return err
	}
	for i, k := range todo {
		a := asks[i]
		var zs []redis.Z
		if a.script != nil {
			if zs, err = scriptZ(a.script); err != nil {
				return err
			}
		} else {
			zs = a.plain.Val()
		}
		kept := 0
		for _, z := range zs {
			m, _ := z.Member.(string)
			if !a.has || int64(z.Score) < a.c.score || m < a.c.member {
				lists[k] = append(lists[k], z)
				kept++
			}
		}
		more[k] = int64(len(zs)) == batch[k]
		tied[k] = more[k] && kept == 0
		batch[k] = min(2*batch[k], want)
	}
	return nil
}

// scriptZ reads pageScript's reply: members and scores, alternating.
func scriptZ(cmd *redis.Cmd) ([]redis.Z, error) {
	flat, err := cmd.StringSlice()
	if err != nil || len(flat)%2 != 0 {
		return nil, fmt.Errorf("page script: %v (%d strings)", err, len(flat))
	}
	zs := make([]redis.Z, 0, len(flat)/2)
	for j := 0; j < len(flat); j += 2 {
		score, err := strconv.ParseFloat(flat[j+1], 64)
		if err != nil {
			return nil, fmt.Errorf("page script: score %q", flat[j+1])
		}
		zs = append(zs, redis.Z{Member: flat[j], Score: score})
	}
	return zs, nil
}

// pageScript returns up to ARGV[2] members of the set KEYS[1] with their
// scores (a flat list), newest first, scored ARGV[1] or more, and after the
// member ARGV[4] scored ARGV[3] when those are given, whether or not that
// member is still there. Members of one score come in descending byte order
// (ZRANGE REV), so the place after the cursor's member among T tied with it
// is found by a binary search over ranks: O(log T) range reads of one
// member. Members are compared byte by byte, not with Lua's <, which follows
// the server's locale.
var pageScript = redis.NewScript(`
local function less(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local key = KEYS[1]
local stop = redis.call('ZCOUNT', key, ARGV[1], '+inf')
local from = 0
if ARGV[4] then
  from = redis.call('ZCOUNT', key, '(' .. ARGV[3], '+inf')
  local to = from + redis.call('ZCOUNT', key, ARGV[3], ARGV[3])
  while from < to do
    local mid = math.floor((from + to) / 2)
    if less(redis.call('ZRANGE', key, mid, mid, 'REV')[1], ARGV[4]) then
      to = mid
    else
      from = mid + 1
    end
  end
end
stop = math.min(stop, from + tonumber(ARGV[2]))
if from >= stop then
  return {}
end
return redis.call('ZRANGE', key, from, stop - 1, 'REV', 'WITHSCORES')
`)

// zLess orders two set members oldest first (score, then member).
func zLess(a, b redis.Z) bool {
	if a.Score != b.Score {
		return a.Score < b.Score
	}
	am, _ := a.Member.(string)
	bm, _ := b.Member.(string)
	return am < bm
}

func (s *Store) fillMeta(ctx context.Context, as []presence.Activity) error {
	if len(as) == 0 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(as))
	for i, a := range as {
		cmds[i] = pipe.HGet(ctx, s.metaKey(s.shardOf(a.ID)), a.ID)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("redispresence: meta: %w", err)
	}
	for i := range as {
		as[i].Meta = cmds[i].Val()
	}
	return nil
}

// Get returns one user's activity from Redis, or false if unknown.
func (s *Store) Get(ctx context.Context, id string) (presence.Activity, bool, error) {
	return s.get(ctx, s.userKeys[s.shardOf(id)], id)
}

// get reads id's score in the set key, and its meta.
func (s *Store) get(ctx context.Context, key, id string) (presence.Activity, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
	defer cancel()
	pipe := s.rdb.Pipeline()
	score := pipe.ZScore(ctx, key, id)
	meta := pipe.HGet(ctx, s.metaKey(s.shardOf(id)), id)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return presence.Activity{}, false, fmt.Errorf("redispresence: get: %w", err)
	}
	if errors.Is(score.Err(), redis.Nil) {
		return presence.Activity{}, false, nil
	}
	return presence.Activity{ID: id, LastSeen: time.UnixMicro(int64(score.Val())).UTC(), Meta: meta.Val()}, true, nil
}

// Stats returns the Store's counters. Buffered and Pending walk the buffer.
func (s *Store) Stats() Stats {
	st := Stats{
		Touches: uint64(s.touches.Value()), Sent: s.sent.Load(), Dropped: s.dropped.Load(),
		Flushes: s.flushes.Load(), FlushErrors: s.flushErrors.Load(), Trimmed: s.trimmed.Load(),
		FlushCalls: s.flushCalls.Load(), Resent: s.resent.Load(), FlushTime: time.Duration(s.flushNanos.Load()),
	}
	if ns := s.lastFlush.Load(); ns != 0 {
		st.LastFlush = time.Unix(0, ns).UTC()
	}
	s.buf.Range(func(_ entryKey, p *pending) bool {
		if ns := p.ns.Load(); ns != deadNS {
			st.Buffered++
			if ns != p.sent.Load() || p.meta.Load() != p.metaSent.Load() {
				st.Pending++
			}
		}
		return true
	})
	return st
}

// Close stops the flusher and sends what is pending, within ctx. It returns
// the last flush's error; nothing of the Store runs after it. It is
// idempotent (later calls return nil). It does not close the Redis client.
func (s *Store) Close(ctx context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		s.cancel()
		<-s.done
		if s.ev != nil {
			s.ev.wg.Wait()
			s.ev.closeAll()
		}
		err = s.Flush(ctx)
	})
	return err
}

var (
	_ presencehttp.Querier    = (*Store)(nil)
	_ middleware.MetaRecorder = (*Store)(nil)
)
