package presence

import (
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
// A Hub is safe for concurrent use. Its zero value is ready to use.
type Hub struct {
	mu      sync.Mutex                      // serializes publishing: Seq order
	subs    atomic.Pointer[[]*Subscription] // copied on write; nil or empty: no event work
	seq     uint64                          // guarded by mu
	closed  bool                            // guarded by mu
	dropped atomic.Uint64                   // lost by all subscribers; written under mu
}

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
	// Guarded by the hub's mu.
	owed   bool   // an Overflow is owed before the next event
	lost   uint64 // the Seq of the last event lost
	closed bool
}

// defaultBuffer is Subscribe's buffer for buffer <= 0.
const defaultBuffer = 1024

// Subscribe returns a subscription to the events published from now on,
// with a channel buffer of buffer events (buffer <= 0 selects 1024). On a
// closed Hub, its channel is closed at once.
func (h *Hub) Subscribe(buffer int) *Subscription {
	if buffer <= 0 {
		buffer = defaultBuffer
	}
	sub := &Subscription{h: h, ch: make(chan Event, buffer)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		sub.closed = true
		close(sub.ch)
		return sub
	}
	old := h.subscribers()
	subs := append(make([]*Subscription, 0, len(old)+1), old...)
	subs = append(subs, sub)
	h.subs.Store(&subs)
	return sub
}

// Active reports whether the hub has a subscriber: a backend skips the
// work of making events while it has none. It takes no lock.
func (h *Hub) Active() bool {
	p := h.subs.Load()
	return p != nil && len(*p) > 0
}

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
	for _, s := range h.subscribers() {
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
	for _, s := range h.subscribers() {
		h.unsubscribe(s)
	}
}

// Subscribers returns the number of open subscriptions.
func (h *Hub) Subscribers() int { return len(h.subscribers()) }

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
	var subs []*Subscription
	for _, o := range h.subscribers() {
		if o != s {
			subs = append(subs, o)
		}
	}
	h.subs.Store(&subs)
}

func (h *Hub) subscribers() []*Subscription {
	if p := h.subs.Load(); p != nil {
		return *p
	}
	return nil
}

// deliverAll numbers ev and delivers it to every subscriber. Called with
// mu held.
func (h *Hub) deliverAll(ev Event) {
	h.seq++
	ev.Seq = h.seq
	for _, s := range h.subscribers() {
		s.deliver(ev)
	}
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
