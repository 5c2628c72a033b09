package presence

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Hub fans a backend's events out to its subscriptions: it numbers them
// (Seq), delivers each to every subscription without ever waiting, and owes
// a subscription that lost events an Overflow before its next one. It is
// the one mechanism behind Subscribe in every backend of this module (the
// engine and the Redis store); a new backend uses it the same way.
//
// A subscription may be scoped ([Scope]) to some rooms and users: an
// event is delivered to the subscriptions of every event, to those scoped
// to its room and to those scoped to its user, found in maps: O(matching
// subscriptions) per event, however many others are open.
//
// A Hub is safe for concurrent use. Its zero value is ready to use.
type Hub struct {
	mu      sync.Mutex    // serializes publishing (Seq order) and guards what follows
	open    atomic.Int64  // subscriptions open; 0: a backend skips the event work
	dropped atomic.Uint64 // lost by all subscribers; written under mu
	seq     uint64
	closed  bool
	all     map[*Subscription]struct{} // every open subscription
	every   []*Subscription            // the unscoped ones
	rooms   map[string][]*Subscription // scoped to a room, by room
	users   map[string][]*Subscription // scoped to a user, by ID
}

// Scope limits a subscription to the events of some rooms and users: a
// Join or Leave (or a later per-room kind) of one of Rooms, and any event
// of one of Users (its Online and Offline, its Joins and Leaves). An event
// that matches both is delivered once. Subscribing with no Scope is to
// every event; with scopes that name nothing (an empty contact list), to
// none. Overflow is delivered to every subscription that lost an event it
// would have received.
type Scope struct {
	Rooms []string
	Users []string
}

// InRooms is the Scope of the events of rooms.
func InRooms(rooms ...string) Scope { return Scope{Rooms: rooms} }

// OfUsers is the Scope of the events of the users ids: a contact list.
func OfUsers(ids ...string) Scope { return Scope{Users: ids} }

// Subscription receives a backend's events, from its Subscribe (or
// [Hub.Subscribe]).
//
// A Subscription is safe for concurrent use. Its channel has a fixed
// buffer: publishing never waits for a subscriber, so one that falls
// behind loses events, counted by Dropped, and the first event it receives
// after a loss is an Overflow.
type Subscription struct {
	h       *Hub
	ch      chan Event
	dropped atomic.Uint64
	scope   Scope // fixed at Subscribe
	scoped  bool  // Subscribe was given scopes: only scope's events, maybe none
	// Guarded by the hub's mu.
	owed   bool   // an Overflow is owed before the next event
	lost   uint64 // the Seq of the last event lost
	last   uint64 // the Seq of the last event offered: one delivery per event
	closed bool
}

// defaultBuffer is Subscribe's buffer for buffer <= 0.
const defaultBuffer = 1024

// Subscribe returns a subscription to the events published from now on,
// within the scopes given (their union; none: every event), with a
// channel buffer of buffer events (buffer <= 0 selects 1024). On a closed
// Hub, its channel is closed at once.
func (h *Hub) Subscribe(buffer int, scopes ...Scope) *Subscription {
	if buffer <= 0 {
		buffer = defaultBuffer
	}
	sub := &Subscription{h: h, ch: make(chan Event, buffer), scoped: len(scopes) > 0}
	for _, sc := range scopes {
		sub.scope.Rooms = append(sub.scope.Rooms, sc.Rooms...)
		sub.scope.Users = append(sub.scope.Users, sc.Users...)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		sub.closed = true
		close(sub.ch)
		return sub
	}
	if h.all == nil {
		h.all, h.rooms, h.users = map[*Subscription]struct{}{}, map[string][]*Subscription{}, map[string][]*Subscription{}
	}
	h.all[sub] = struct{}{}
	h.open.Add(1)
	if !sub.scoped {
		h.every = append(h.every, sub)
		return sub
	}
	for _, room := range sub.scope.Rooms {
		h.rooms[room] = append(h.rooms[room], sub)
	}
	for _, id := range sub.scope.Users {
		h.users[id] = append(h.users[id], sub)
	}
	return sub
}

// Active reports whether the hub has a subscriber: a backend skips the
// work of making events while it has none. It takes no lock.
func (h *Hub) Active() bool { return h.open.Load() > 0 }

// Publish numbers ev (setting its Seq) and delivers it to every
// subscriber. Events published from one goroutine, or under one lock of
// the caller, arrive in that order.
func (h *Hub) Publish(ev Event) {
	h.mu.Lock()
	h.deliverAll(ev)
	h.mu.Unlock()
}

// publishEach publishes an event of kind for each of ids at at, taking the
// lock once: the sweeper's batches.
func (h *Hub) publishEach(kind EventKind, ids []string, room string, at time.Time) {
	h.mu.Lock()
	for _, id := range ids {
		h.deliverAll(Event{Kind: kind, ID: id, Room: room, At: at})
	}
	h.mu.Unlock()
}

// Lost tells every subscriber that events were lost before the next one
// published (a backend's source of events had a gap): each receives an
// Overflow first.
func (h *Hub) Lost() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.all {
		if !s.owed {
			s.owed, s.lost = true, h.seq
		}
	}
}

// Close closes every subscription, and those made later at once. It is
// idempotent.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.all {
		h.unsubscribe(s)
	}
}

// Subscribers returns the number of open subscriptions.
func (h *Hub) Subscribers() int { return int(h.open.Load()) }

// Published returns how many events the hub has published.
func (h *Hub) Published() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seq
}

// Dropped returns how many events subscribers lost by falling behind,
// summed over subscribers.
func (h *Hub) Dropped() uint64 { return h.dropped.Load() }

// isClosed reports whether Close has begun. Called with mu held.
func (h *Hub) isClosed() bool { return h.closed }

// Events returns the channel the subscription's events arrive on. It is
// closed by [Subscription.Close] and when the backend closes.
func (s *Subscription) Events() <-chan Event { return s.ch }

// Dropped returns how many events the subscription lost by falling behind.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close ends the subscription and closes its channel; events still in the
// channel can be read. Close is idempotent.
func (s *Subscription) Close() {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	s.h.unsubscribe(s)
}

// unsubscribe removes s and closes its channel. Called with mu held.
func (h *Hub) unsubscribe(s *Subscription) {
	if s.closed {
		return
	}
	s.closed = true
	close(s.ch)
	delete(h.all, s)
	h.open.Add(-1)
	if !s.scoped {
		h.every = without(h.every, s)
	}
	for _, room := range s.scope.Rooms {
		if h.rooms[room] = without(h.rooms[room], s); len(h.rooms[room]) == 0 {
			delete(h.rooms, room)
		}
	}
	for _, id := range s.scope.Users {
		if h.users[id] = without(h.users[id], s); len(h.users[id]) == 0 {
			delete(h.users, id)
		}
	}
}

// without returns subs less s. Called with mu held, as every reader is.
func without(subs []*Subscription, s *Subscription) []*Subscription {
	return slices.DeleteFunc(subs, func(o *Subscription) bool { return o == s })
}

// deliverAll numbers ev and delivers it to the subscriptions it matches:
// the unscoped ones, those of its room and those of its user, each once.
// Called with mu held.
func (h *Hub) deliverAll(ev Event) {
	h.seq++
	ev.Seq = h.seq
	for _, s := range h.every {
		s.deliver(ev)
	}
	if ev.Room != "" {
		for _, s := range h.rooms[ev.Room] {
			s.offer(ev)
		}
	}
	for _, s := range h.users[ev.ID] {
		s.offer(ev)
	}
}

// offer delivers ev to a scoped s unless s had it already: a subscription
// scoped to both an event's room and its user. Called with mu held.
func (s *Subscription) offer(ev Event) {
	if s.last == ev.Seq {
		return
	}
	s.last = ev.Seq
	s.deliver(ev)
}

// deliver sends ev to s, or loses it if s's channel is full; after a loss,
// an Overflow goes first. Called with the hub's mu held.
func (s *Subscription) deliver(ev Event) {
	if s.owed {
		select {
		case s.ch <- Event{Kind: Overflow, At: ev.At, Seq: s.lost}:
			s.owed = false
		default:
			s.dropped.Add(1)
			s.h.dropped.Add(1)
			s.lost = ev.Seq
			return
		}
	}
	select {
	case s.ch <- ev:
	default:
		s.dropped.Add(1)
		s.h.dropped.Add(1)
		s.owed, s.lost = true, ev.Seq
	}
}
