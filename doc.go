// Package presence answers "who is online, and when was each user last
// active?" from process memory, for servers that take tens of thousands to
// millions of requests per second.
//
// Call [Engine.Touch] on every request; ask [Engine.Count], [Engine.Recent],
// [Engine.Page], [Engine.Since] and [Engine.Get] whenever you like.
//
//	e := presence.New(presence.WithRetention(24 * time.Hour))
//	defer e.Close()
//	e.Touch(userID)                      // on every request
//	online := e.Count(5 * time.Minute)   // "1,234 online"
//	recent := e.Recent(15*time.Minute, 50) // newest first
//
// # Design
//
// Every user has an entry in a concurrent hash map (xsync.MapOf) holding the
// exact last-seen time, and a place in a time index: the users are spread by
// a hash of their ID over a power-of-two number of shards, each with a lock,
// a B-tree (google/btree) of (time, ID) pairs and a count of users per slot.
// A slot is the last-seen time rounded down to the resolution
// ([WithResolution], default one second); the index files a user under its
// slot and, within it, under the time it entered the slot.
//
// A Touch of a known user whose slot does not change is a map probe, a
// compare-and-swap and a load: no lock, no allocation. Only when the time
// enters a new slot (at most once per user per resolution) does the entry
// move in its shard's B-tree, under the shard's lock, in O(log n).
//
// # Window queries
//
// Window queries are exact to the resolution: [Engine.CountSince](t) counts
// the users whose slot is t's slot or newer, so users seen up to one
// resolution before t may count. [Engine.Get] and [Engine.LastSeen] are
// exact, and so is every LastSeen a query returns.
//
// Counts read the per-slot counters, never the users: O(shards x 300) word
// reads whatever the window holds. The counters cover a horizon of 131,072
// slots (36 hours at the default resolution; with [WithRetention], just over
// the retention, but at least 4,096 slots). Users seen before the horizon
// are still counted exactly, by a walk of the index that costs O(k) in the
// number of them in the window.
//
// [Engine.Recent] and [Engine.Page] walk each shard's B-tree from the newest
// end and merge, reading from each shard about twice its share of the k
// users asked for, and more only from the shards the merge runs through:
// O(shards x (log n + k/shards) + k x log shards). The order is newest
// slot first, and within a slot newest first by the time each user entered
// it, in steps of 1/512 of a slot at the default resolution (2ms), then by
// a hash of the ID. A later touch in the same slot updates the user's time
// but not its place, which is what keeps that touch lock-free; so within
// one slot the order is by first touch, not last. Filing in time order also
// keeps B-tree inserts near the newest end, in cache. Paging resumes
// strictly after a [Cursor], so a user touched between pages is not
// returned twice; a cursor stays valid across restarts.
//
// # Concurrency
//
// Every method of [Engine] is safe for concurrent use. Queries take each
// shard's read lock in turn: a result is not one atomic cut across shards.
// A user touched during a query may be reported with its newer time. A
// page may read a shard again, after the last user it read there, when
// that shard holds more of the page than its share; a user of that shard
// touched in between has moved ahead of the walk, as between pages, and
// may be missing from that page (counts read each shard once).
// Once writes stop, every query is exact.
//
// # Snapshots
//
// [Engine.WriteTo] and [Engine.ReadFrom] move the whole state through any
// io.Writer and io.Reader; [Engine.SaveFile] replaces a file atomically, and
// [Open] restores one at start and saves it periodically, so that a restart
// loses at most one interval. Writing holds each shard's lock only to clone
// its B-tree; reading checks the whole file (checksums, lengths, limits)
// before merging anything, and refuses a bad one with an error wrapping
// [ErrCorruptSnapshot] or [ErrSnapshotVersion]. snapshot.go documents the
// format byte by byte. [Open] sizes the user map for the snapshot it loads;
// an engine made by New grows its map as users arrive, unless
// [WithExpectedUsers] sized it up front.
//
// # Limits and bad input
//
// IDs must be 1 to [MaxIDLen] bytes; others are ignored and counted in
// [Stats]. Meta is at most [MaxMetaLen] bytes. Times that are zero or
// outside the years 1678 to 2262 are ignored. [WithMaxUsers] caps memory:
// a new user beyond the cap evicts the least recently seen. [WithRetention]
// forgets idle users, counting from the engine's clock: they leave every
// query at once, and their memory is reclaimed a few at a time by later
// writes, or at once by [Engine.Prune]. An expired user is gone as if
// forgotten even before that: SetMeta and Forget do not know it, and a Touch
// brings it back as a new user without its meta.
//
// # Caveats
//
// A TouchAt far ahead of the clock (a skewed clock, bad input) does not
// move the counters' horizon: such users are counted apart, by slot, until
// the clock nears them, so counts of the present stay O(shards x 300).
//
// Presence per room or topic and online/offline events are not built yet;
// the index keeps each shard's oldest users at the front of its B-tree so
// that a sweeper can find them in O(log n).
package presence
