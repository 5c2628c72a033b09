package redispresence

import (
	"context"
	_ "embed"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onlinenow/presence"
	"github.com/redis/go-redis/v9"
)

// WithEvents makes the Store publish presence events for the whole fleet,
// with users online while seen within the online window
// ([WithOnlineWindow]): Online and Offline, Join and Leave (see
// [Store.Subscribe]). Every Store sharing the data must use it, with the
// same window, for events to be complete: a Store without it writes
// touches that raise no Online.
func WithEvents() Option { return func(c *config) { c.events = true } }

// WithEventPoll sets how often a Store with subscribers reads the event
// streams (default 50ms): the latency a subscriber adds to a flush's.
func WithEventPoll(d time.Duration) Option { return func(c *config) { c.poll = d } }

// WithStreamLen sets about how many events each shard's stream keeps
// (XADD MAXLEN ~, default 100,000): how far a Store that lost Redis for a
// while can fall behind and still resume without an Overflow.
func WithStreamLen(n int) Option { return func(c *config) { c.streamLen = n } }

// events is a Store's share of the fleet's events. Each shard n of the
// users has a stream "<prefix>:events:{n}" and a state hash
// "<prefix>:edge:{n}" (the window's edge as last applied, and the stream's
// last sequence number), in the slot of the shard's sets: the scripts that
// change who is online and publish it run atomically on one shard, so the
// stream's order is the order of the changes.
type events struct {
	s      *Store
	window int64 // µs
	node   string

	hub     presence.Hub // the subscriptions of this Store
	startMu sync.Mutex   // held while the reader starts
	reading bool         // guarded by startMu: the reader runs
	wg      sync.WaitGroup
	read    atomic.Uint64 // events read from the streams
}

func newEvents(s *Store) *events {
	return &events{s: s, window: s.cfg.window.Microseconds(), node: s.node}
}

func (s *Store) streamKey(n int) string { return s.cfg.prefix + ":events:{" + strconv.Itoa(n) + "}" }
func (s *Store) stateKey(n int) string  { return s.cfg.prefix + ":edge:{" + strconv.Itoa(n) + "}" }
func (e *events) keys(n int) []string {
	return []string{e.s.userKeys[n], e.s.streamKey(n), e.s.stateKey(n), e.s.indexKey(n)}
}

// edge is the window's edge now, in Unix µs: users seen at it or before
// are offline.
func (e *events) edge() int64 { return e.s.cfg.now().UnixMicro() - e.window }

// publish queues, on pipe, the write of records (room, id, µs; room "" for
// the user's global time) of shard n, which publishes Online and Join for
// those it raises from the window's edge or before to after it.
func (e *events) publish(ctx context.Context, pipe redis.Pipeliner, n int, records []any) *redis.Cmd {
	args := append([]any{e.s.keyOf(setRef{kind: roomSet, n: n}), e.s.cfg.streamLen, e.edge()}, records...)
	// EVAL, not EVALSHA: a pipeline cannot send the script again after a
	// NOSCRIPT (a restart or a failover empties the cache), and the body
	// costs a few hundred bytes per 512 records.
	return publishScript.Eval(ctx, pipe, e.keys(n), args...)
}

// publishScript: KEYS users, stream, state and index of one shard; ARGV the
// room keys' prefix, the stream's length, the edge to use if the shard has
// none yet, then (room, id, µs) records. The edge is the shard's own, as
// the sweeper last moved it, so that a user is online exactly while its
// time is after it: each Online is followed by one Offline, whichever
// Stores' clocks decided them.
var publishScript = redis.NewScript(publishLua)

//go:embed scripts/publish.lua
var publishLua string

// sweepScript moves one shard's edge to ARGV[3] and publishes Offline for
// the users, and Leave for the members of the shard's rooms, whose time it
// passed: a range read from the old edge to the new, for the users and
// each room active since the old edge, and deletes their connections'
// hashes, whose prefix is ARGV[4]. KEYS and ARGV[1..2] as publishScript's.
var sweepScript = redis.NewScript(sweepLua)

//go:embed scripts/sweep.lua
var sweepLua string

// removeScript removes the members ARGV[5:] from the set KEYS[1] (of the
// shard whose stream and state are KEYS[2] and KEYS[3]) and publishes, for
// each that was online in it, an event of kind ARGV[2] ("gone": Offline;
// "left": Leave) at ARGV[4] µs, in room ARGV[3]. ARGV[1] is the stream's
// length. A shard that has no edge has published nothing, so owes no
// event: without WithEvents the script is a ZREM that counts. It returns
// how many it removed.
var removeScript = redis.NewScript(removeLua)

//go:embed scripts/remove.lua
var removeLua string

// endScript ends the room ARGV[2], whose set is KEYS[1], publishing Leave
// at ARGV[3] µs for its online members, and removes it from the index
// KEYS[4]; KEYS[2..3] and ARGV[1] as removeScript's. It returns the
// members it had, whose lists the caller updates.
var endScript = redis.NewScript(endLua)

//go:embed scripts/end.lua
var endLua string

// remove queues, on pipe, the removal of members from the set ref (a
// room's or the users'), publishing Leave or Offline, now, for those that
// were online, and their tombstones; their connections' data goes too.
func (s *Store) remove(ctx context.Context, pipe redis.Pipeliner, ref setRef, members ...string) int64Cmd {
	kind := "left"
	if ref.kind == usersSet {
		kind = "gone"
	}
	args := append([]any{s.cfg.streamLen, kind, ref.name, s.cfg.now().UnixMicro()}, anys(members)...)
	keys := []string{s.keyOf(ref), s.streamKey(ref.n), s.stateKey(ref.n)}
	cmd := int64Cmd{removeScript.Eval(ctx, pipe, keys, args...)}
	for _, id := range members {
		pipe.Del(ctx, s.connsKey(ref.name, id))
	}
	s.bury(ctx, pipe, ref, members...)
	return cmd
}

// sweeper moves the window's edge every interval while this Store holds
// the lease ("<prefix>:sweeper", SET NX PX for three intervals, renewed
// each): one Store of the fleet at a time does the work. Two at once (a
// lease lost to a pause) publish nothing twice: each shard's script reads
// the edge it moves.
func (e *events) sweeper() {
	defer e.wg.Done()
	s := e.s
	t := time.NewTicker(s.cfg.interval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if err := e.sweep(s.ctx); err != nil && s.ctx.Err() == nil {
			s.flushErrors.Add(1)
			s.report(err)
		}
	}
}

// Sweep moves the online window's edge to now, publishing Offline and
// Leave for the users and members it passes, if this Store holds the
// sweeper's lease or can take it; the Store does it every flush interval.
// Without WithEvents it does nothing.
func (s *Store) Sweep(ctx context.Context) error {
	if s.ev == nil {
		return nil
	}
	return s.ev.sweep(ctx)
}

// sweep takes or renews the lease and, holding it, moves every shard's
// edge to now less the window.
func (e *events) sweep(ctx context.Context) error {
	s := e.s
	return bounded0(s, ctx, func(ctx context.Context) error {
		held, err := leaseScript.Run(ctx, s.rdb, []string{s.cfg.prefix + ":sweeper"}, e.node, (3 * s.cfg.interval).Milliseconds()).Int()
		if err != nil || held == 0 {
			return wrap("sweeper lease", err)
		}
		edge := e.edge()
		pipe := s.rdb.Pipeline()
		for n := range s.cfg.keys {
			sweepScript.Eval(ctx, pipe, e.keys(n), s.keyOf(setRef{kind: roomSet, n: n}), s.cfg.streamLen, edge, s.connsPrefix(n))
		}
		_, err = pipe.Exec(ctx)
		return wrap("sweep", err)
	})
}

// leaseScript takes the lease KEYS[1] for ARGV[1] for ARGV[2] ms, or
// renews it if ARGV[1] holds it; 1 if it does now.
var leaseScript = redis.NewScript(leaseLua)

//go:embed scripts/lease.lua
var leaseLua string
