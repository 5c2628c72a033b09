// Package presence answers "who is online, and when was each user last
// active?" from process memory, for servers that take tens of thousands to
// millions of requests per second.
//
// Call [Engine.Touch] on every request; ask [Engine.Count], [Engine.Recent],
// [Engine.Page], [Engine.Since] and [Engine.Get] whenever you like.
//
//	e := presence.New(presence.WithRetention(24 * time.Hour))
//	e.Touch(userID)                        // on every request
//	online := e.Count(5 * time.Minute)     // "1,234 online"
//	recent := e.Recent(15*time.Minute, 50) // newest first
//
// An engine made by [New] starts no goroutine. One made by [Open] restores
// a snapshot file and saves it in the background until [Engine.Close]; it
// takes every [Option] and the file's options ([OpenOption]).
//
// # Design
//
// Every user has an entry in a concurrent hash map (xsync.MapOf) holding the
// exact last-seen time, and a place in a time index: users are spread by a
// hash of their ID over a power-of-two number of shards, each with a lock, a
// B-tree (google/btree) of (time, ID) items and a count of users per slot.
// A slot is the last-seen time rounded down to the resolution
// ([WithResolution], default one second).
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
// resolution before t may count. [Engine.Get], [Engine.LastSeen] and every
// LastSeen a query returns are exact.
//
// Counts read the per-slot counters, never the users: O(shards x 300) word
// reads whatever the window holds. The counters cover a horizon of 131,072
// slots (36 hours at the default resolution; with [WithRetention], just over
// the retention, but at least 4,096 slots); older users are still counted
// exactly, by a walk of the index in O(k) of them.
//
// [Engine.Recent] and [Engine.Page] walk each shard's B-tree from the newest
// end and merge: O(shards x (log n + k/shards) + k x log shards) for k
// users. The order is newest slot first, and within a slot newest first by
// the time each user entered it (in steps of 1/512 of a slot), then by a
// hash of the ID: a later touch in the same slot updates the user's time
// but not its place, which keeps that touch lock-free. Paging resumes
// strictly after a [Cursor], so a user touched between pages is not
// returned twice.
//
// # Concurrency
//
// Every method of [Engine] is safe for concurrent use. Queries take each
// shard's read lock in turn: a result is not one atomic cut across shards,
// and a user touched during a query may be reported with its newer time. A
// page may read a shard again, after the last user it read there; a user of
// that shard touched in between has moved ahead of the walk, as between
// pages, and may be missing from that page. Once writes stop, every query
// is exact.
//
// # Rooms
//
// A room is whatever the application names: a page, a document, a chat, a
// tenant. [Engine.TouchIn](room, id) records id in the room and globally, as
// Touch does; [Engine.Room](name) is a read view whose Count, CountSince,
// Recent, Page and Get answer for the room's members, each at its last-seen
// time in the room, with the same costs, exactness and paging as the
// engine's own queries. [Engine.Leave] ends one membership; [Engine.Forget],
// an eviction for [WithMaxUsers] and retention end them all. [Engine.Rooms]
// lists the busiest rooms of a window and [Engine.RoomsOf] a user's rooms.
//
//	e.TouchIn(r.URL.Path, userID)                        // on every request
//	others := e.Room(r.URL.Path).Recent(time.Minute, 10) // "also viewing"
//
// Each room is a shard of its own: a B-tree of its members, and per-slot
// counters once it holds 256 members (a smaller room counts by a walk).
// A TouchIn of a member whose slot in the room does not change is one more
// map probe and compare-and-swap than a Touch. An empty room holds nothing
// and disappears. [WithMaxRooms] and [WithMaxRoomsPerUser] (1,000 by
// default) bound a flood of names: what goes is the least recently active. A cursor belongs to the
// walk that made it; another room's is refused ([Room.CheckCursor]).
// Snapshots carry memberships, and merging two merges them.
//
// # Events and held connections
//
// [Engine.Subscribe] returns a [Subscription] whose channel receives
// [Event]s: Online when a user who was not online is touched or held,
// Offline when one is neither held nor seen within the online window
// ([WithOnlineWindow], default 5 minutes), and Join and Leave the same per
// room, and Update when an online user's connections change.
// [Engine.Enter] (and Hold and HoldIn, without data) keeps a long-lived
// connection's user online (and in the room) until closed, several
// connections counting once, with a grace ([WithHoldGrace]) after the
// last closes; a held user counts in every query as seen now, with
// [Activity].Held set and each connection's data (at most [MaxDataLen]
// bytes: a name, a device, a cursor) in [Activity].Data.
// [Engine.Online] counts who is online, [Engine.OnlinePage] lists them.
//
//	sub := e.Subscribe(0)
//	go func() {
//		for ev := range sub.Events() { // closed by sub.Close or e.Close
//			log.Println(ev.Kind, ev.ID, ev.Room) // "online alice", "join bob doc"
//		}
//	}()
//	conn, err := e.Enter("doc/42", userID, []byte(`{"name":"Alice"}`)) // while a websocket is open
//	if err != nil { ... }
//	defer conn.Close()
//	conn.Update([]byte(`{"name":"Alice","typing":true}`)) // an Update event
//
// # The rules of touches, connections and events
//
// These hold on every [Backend] (the engine and the Redis store), with two
// differences on the store: it has no hold grace (a user whose last
// connection closed stays online for the window), and its lists match the
// events once its sweep, each flush interval, has passed:
//
//   - A user is online while held (a connection open: [Engine.Enter],
//     Hold, HoldIn) or seen within the online window, and not gone by a
//     hold's grace; a member of a room likewise, by its time in the room.
//     [Engine.OnlinePage] and [Engine.Online] (and a Room's) list and count
//     exactly them, as the events describe: a user between its Online and
//     its Offline, a member between its Join and its Leave.
//   - Online (Join) comes when a user (member) who was not online is
//     touched or gets a connection; it carries the data of its
//     connections ([Event].Data). A user's Online comes before its first
//     Join, its last Leave before its Offline.
//   - Every other change of an online user's connections is an Update,
//     never Offline and Online: one more connection (the first hold of a
//     user online by a touch included, so a touch before a hold does not
//     hide the hold), one fewer (the last included: the user stays online
//     for the grace, Data empty), new data ([Conn].Update).
//   - Offline (Leave) comes when the window passes a user not held, the
//     grace passes after its last connection closed and it was not seen
//     since, or it leaves the backend (Forget, Leave, Prune, retention,
//     eviction). Its connections end with it: their Update returns
//     [ErrClosed].
//   - A touch of a held user changes nothing; the window queries show it
//     as seen now, with [Activity].Held and its connections' Data.
//   - middleware.Track around middleware.Hold records nothing for the
//     held request: its user goes offline one grace after the connection
//     ends, not one window.
//
// Publishing never waits: a subscriber that falls behind loses events,
// counted by [Subscription.Dropped], and its next event is an Overflow, so
// it knows to re-read the state with a query. A subscription may be scoped
// to rooms and users ([InRooms], [OfUsers], [Scope]): a document's viewers
// subscribe to its room, a contact list to its users, and an event costs
// O(subscriptions it matches), not O(all of them). With no subscriber no
// event work is done. Offline is found by the engine's sweeper goroutine, started
// by the first Subscribe or Hold and stopped by Close; each tick it walks
// only the range of the time index that crossed the window's edge, so its
// cost is per user going offline, not per user online. In a burst (a
// million users going offline at once) it waits, holding no lock and for
// half a tick at most per sweep, until each subscriber has room for its
// next batch, so that one that keeps up receives all of it through a small
// buffer; touches and queries never wait for it. Users online when
// it starts (restored from a snapshot, say) are online without an event,
// and go Offline on time.
//
// # Snapshots
//
// [Engine.WriteTo] and [Engine.ReadFrom] move the whole state through any
// io.Writer and io.Reader; [Engine.SaveFile] replaces a file atomically, and
// [Open] restores one at start and saves it periodically, so that a restart
// loses at most one interval. Writing holds each shard's lock only to clone
// its B-tree; reading checks the whole file before merging anything, and
// refuses a bad one with an error wrapping [ErrCorruptSnapshot] or
// [ErrSnapshotVersion]. snapshot.go documents the format byte by byte.
//
// # Metrics and logs
//
// [Engine.Stats] returns the engine's counters: users, touches, index
// moves, users added and removed by reason, rejected IDs and room names,
// rooms, snapshots (saves, errors, time spent, the last good one's time
// and size) and events (subscribers, published, lost). It costs
// O(shards), whatever the number of users: it is counted under locks a
// write holds anyway. Touches are counted only with [WithTouchCount] (a
// striped xsync.Counter), since even that adds a quarter to a hot touch; the
// middleware counts requests instead. The
// presenceprom module exports all of it to Prometheus. [WithLogger] sends
// the background work's trouble (failed saves with their path, a corrupt
// file moved aside, events subscribers lost) to a *slog.Logger; without
// it nothing is logged.
//
// # Limits and bad input
//
// IDs must be 1 to [MaxIDLen] bytes; others are ignored and counted in
// [Stats]. Meta is at most [MaxMetaLen] bytes. Times that are zero or
// outside the years 1678 to 2262 are ignored. [WithMaxUsers] caps memory: a
// new user beyond the cap evicts the least recently seen. [WithRetention]
// forgets idle users by the engine's clock: they leave every query at once,
// and are gone as if forgotten. A TouchAt far ahead of the clock is counted
// apart until the clock nears it, so counts of the present stay cheap.
//
// # Source files
//
// presence.go holds the Engine and its writes; shard.go a shard (a lock,
// a time index and the users filed in it); index.go the time index, on
// key.go's items and layout and counts.go's per-slot counters; page.go
// the one k-way merge, which serves pages, [Engine.Since] and
// [Engine.WriteTo]; cursor.go the [Cursor]; query.go the queries;
// rooms.go the rooms; events.go the events and subscriptions, holds.go
// the holds, sweep.go the sweeper; snapshot.go the snapshot format and
// writer, decode.go its decoder, merge.go the max-merge, file.go the files
// and [Open], saver.go the saver; options.go and errors.go the options and
// errors.
package presence
