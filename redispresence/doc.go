// Package redispresence keeps presence in Redis, for a fleet of servers that
// needs one global view of who is online. A [Store] is a
// [presence.Backend], as the engine's adapter is, so the middleware, the
// dashboard and the API work with it unchanged.
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
// back off up to 30s, and report to [WithErrorHandler] and Stats; nothing
// buffered is lost, and everything is written once Redis answers again.
// After a failed flush or a connection to a new address (a failover), the
// next flush also sends the two last good batches again (Stats.Resent): a
// new master may lack writes the old one acknowledged but did not replicate.
// What Leave, Forget, the room caps and the rooms' retention removed leaves
// tombstones in "<prefix>:gone:{n}" for ten minutes, and a resend leaves out
// the times they are newer than, so that one Store's resend does not bring
// back what another removed (a touch still buffered from before the removal
// does, as any touch does). Every call that waits on Redis (queries,
// Leave, Forget, Prune, Sweep, Subscribe) returns when its context or the
// timeout ends, whether or not the client was made with
// ContextTimeoutEnabled; without it, the call runs on a worker goroutine
// (a hand-off of about 20 µs between cores) and its network wait goes on
// in the background until go-redis's own read timeout. Make the client
// with ContextTimeoutEnabled for the fastest queries. Flushes are bounded by the
// timeout through the context, so they need ContextTimeoutEnabled (or the
// client's read timeout) to stop waiting sooner.
//
// # Rooms
//
// [Store.TouchInAt] records a user in a room, in the same buffer as its
// global time: a membership costs one write to its room per interval, and
// one to its user's list when it enters the buffer. [Store.Room] is a
// read view of one room (a presence.Querier, so the API and the
// dashboard can show it); [Store.Rooms] lists the busiest, [Store.RoomsOf]
// a user's, [Store.Leave] ends a membership. WithMaxRooms and
// WithMaxRoomsPerUser cap them; retention prunes them as it prunes users.
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
// With [WithRetention], every Store prunes users older than the retention
// from the sets (and their meta, memberships and idle rooms) every minute,
// with [Store.Prune], which a program may also call itself. Pruning is
// idempotent, so many servers doing it is harmless.
package redispresence
