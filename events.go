package presence

import (
	"sync"

	"sync/atomic"
	"time"

	"github.com/google/btree"
)

// EventKind is what an [Event] reports.
type EventKind uint8

const (
	// Online: a user who was not online (unknown, or neither held nor seen
	// within the online window) was touched or held.
	Online EventKind = iota + 1
	// Offline: an online user is neither held nor seen within the online
	// window any more, or its last hold was released longer ago than the
	// hold grace and it was not seen since; or it left the engine (Forget,
	// Prune, retention, eviction for WithMaxUsers).
	Offline
	// Join: as Online, for a member of the room the event names.
	Join
	// Leave: as Offline, for a member of the room the event names; also
	// sent by [Engine.Leave], WithMaxRoomsPerUser and the end of a room for
	// WithMaxRooms.
	Leave
	// Overflow: the subscriber fell behind and lost events before this one
	// (see [Subscription.Dropped]); re-read the state with a query.
	Overflow
	// Update: the connections ([Conn]) of a user who is online, globally
	// or in the room the event names, changed: one opened or closed, or
	// one's data changed. Data lists them as they are now.
	Update
)

var kindNames = [...]string{"", "online", "offline", "join", "leave", "overflow", "update"}

// String returns "online", "offline", "join", "leave", "overflow" or
// "update".
func (k EventKind) String() string {
	if int(k) < len(kindNames) && k != 0 {
		return kindNames[k]
	}
	return "unknown"
}

// Event is a change of a user's presence, globally (Room is "") or in a
// room.
//
// Seq numbers the engine's events: each event has the Seq of the one
// before it plus one, and every subscriber receives its events in Seq
// order, with gaps only where it lost events. An Overflow event carries
// the Seq of the last event lost before it, and no ID.
//
// Data is, for Online, Join and Update, the data of each of the user's
// open connections ([Conn]), globally or in the room, in the order they
// opened (nil for one without data, as a Hold's): the Activity.Data a
// query would now list. Its slices must not be modified.
type Event struct {
	Kind EventKind
	ID   string
	Room string
	At   time.Time // the touch, hold or release behind it, or when the engine found it out
	Seq  uint64
	Data [][]byte
}

// live is the engine's events: subscribers, holds' grace and the sweeper.
type live struct {
	hub        Hub    // the subscriptions; its lock orders the events
	lostLogged uint64 // dropped as the sweeper last logged it; the sweeper's own

	onlineWindow int64 // ns; WithOnlineWindow
	grace        int64 // ns; WithHoldGrace
	tick         time.Duration

	// edgeSlot is the slot the online window starts at as the sweeper last
	// applied it (minSlot until it first runs): a room made later starts
	// its edge there.
	edgeSlot  atomic.Int64
	startOnce sync.Once
	started   atomic.Bool
	stop      chan struct{}
	done      chan struct{}
	stopOnce  sync.Once

	// due schedules the rooms' sweeps (dueRoom), from the first sweep on
	// (dueOn). Its lock is taken after a room's.
	dueMu sync.Mutex
	due   *btree.BTreeG[dueRoom]
	dueOn atomic.Bool

	graceMu  sync.Mutex
	graceQ   []graceCheck // releases in time order, checked at release + grace
	graceOff atomic.Int64 // users offline by the grace while seen within the window
}

// graceCheck is a release to look at again once the grace has passed.
type graceCheck struct {
	s   *shard
	ent *entry // the user released: one forgotten and seen again is another
	id  string
	at  int64 // the release, Unix ns
}

// Subscribe returns a subscription to the engine's events from now on,
// within scopes (none: every event; see [Scope]), with a channel buffer of
// buffer events (buffer <= 0 selects 1024). It starts
// the engine's sweeper, which finds users going offline, if it is not
// running yet; [Engine.Close] stops it and closes every subscription.
//
// Users already online when the first subscription or hold starts are
// online without an Online event; they go Offline in time as any other.
func (e *Engine) Subscribe(buffer int, scopes ...Scope) *Subscription {
	e.startLive()
	return e.hub.Subscribe(buffer, scopes...)
}

// publish sends an event to every subscriber, never waiting: a full
// channel loses it. Called with the lock of the shard the change was in,
// so a user's events (and a member's in a room) are published in order.
// With no subscriber it does nothing, not even read the clock.
func (e *Engine) publish(kind EventKind, id, room string, at int64, now *reading) {
	if !e.hub.Active() {
		return
	}
	if at == 0 && now != nil {
		at = now.ns()
	}
	e.publishData(kind, id, room, at, nil)
}

// publishData is publish with the connections' data.
func (e *Engine) publishData(kind EventKind, id, room string, at int64, data [][]byte) {
	if !e.hub.Active() {
		return
	}
	if at == 0 {
		at = e.now().UnixNano()
	}
	e.hub.Publish(Event{Kind: kind, ID: id, Room: room, At: time.Unix(0, at).UTC(), Data: data})
}

// publishEach publishes an event of kind for each of ids, as publish does,
// at now, taking the hub's lock once: the sweeper's batches.
func (e *Engine) publishEach(kind EventKind, ids []string, room string, now *reading) {
	if !e.hub.Active() || len(ids) == 0 {
		return
	}
	e.hub.publishEach(kind, ids, room, time.Unix(0, now.ns()).UTC())
}

// Online returns how many users are online: held, or seen within the
// online window ([WithOnlineWindow]) and not released longer ago than the
// hold grace without being seen since. Once the sweeper runs (a
// subscription or a hold started it), the window is as it last moved it,
// so that Online counts the users between their Online and Offline
// events. It reads the slot counters, as Count does.
func (e *Engine) Online() int {
	return max(0, e.countFrom(e.onlineSlot())-int(e.graceOff.Load()))
}

// announce publishes that id came online (or joined the room), or went
// offline (or left it), at ns (0: now).
func (s *shard) announce(online bool, id string, ns int64, now *reading) {
	kind := s.offKind()
	if online {
		kind = s.onKind()
	}
	s.e.publish(kind, id, s.room, ns, now)
}

// onKind is the kind of the shard's events for a user come: Online, or
// Join in a room.
func (s *shard) onKind() EventKind {
	if s.room != "" {
		return Join
	}
	return Online
}

// offKind is the kind of the shard's events for a user gone: Offline, or
// Leave in a room.
func (s *shard) offKind() EventKind {
	if s.room != "" {
		return Leave
	}
	return Offline
}
