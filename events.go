package presence

import (
	"sync"
	"sync/atomic"
	"time"
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
)

var kindNames = [...]string{"", "online", "offline", "join", "leave", "overflow"}

// String returns "online", "offline", "join", "leave" or "overflow".
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
type Event struct {
	Kind EventKind
	ID   string
	Room string
	At   time.Time // the touch, hold or release behind it, or when the engine found it out
	Seq  uint64
}

// Subscription receives an engine's events, from [Engine.Subscribe].
//
// A Subscription is safe for concurrent use. Its channel has a fixed
// buffer: publishing never waits for a subscriber, so one that falls
// behind loses events, counted by Dropped, and the first event it receives
// after a loss is an Overflow.
type Subscription struct {
	e       *Engine
	ch      chan Event
	dropped atomic.Uint64
	// Guarded by the engine's pubMu.
	owed   bool   // an Overflow is owed before the next event
	lost   uint64 // the Seq of the last event lost
	closed bool
}

// defaultBuffer is Subscribe's buffer for buffer <= 0.
const defaultBuffer = 1024

// live is the engine's events: subscribers, holds' grace and the sweeper.
type live struct {
	pubMu      sync.Mutex                      // serializes publishing: Seq order
	subs       atomic.Pointer[[]*Subscription] // copied on write; nil or empty: no event work
	seq        uint64                          // guarded by pubMu
	dropped    atomic.Uint64                   // lost by all subscribers; written under pubMu, read by Stats
	lostLogged uint64                          // dropped as the sweeper last logged it; the sweeper's own
	closing    bool                            // guarded by pubMu: Close has begun

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

// Subscribe returns a subscription to the engine's events from now on, with
// a channel buffer of buffer events (buffer <= 0 selects 1024). It starts
// the engine's sweeper, which finds users going offline, if it is not
// running yet; [Engine.Close] stops it and closes every subscription.
//
// Users already online when the first subscription or hold starts are
// online without an Online event; they go Offline in time as any other.
func (e *Engine) Subscribe(buffer int) *Subscription {
	if buffer <= 0 {
		buffer = defaultBuffer
	}
	e.startLive()
	sub := &Subscription{e: e, ch: make(chan Event, buffer)}
	e.pubMu.Lock()
	defer e.pubMu.Unlock()
	if e.isClosed() {
		sub.closed = true
		close(sub.ch)
		return sub
	}
	old := e.subscribers()
	subs := append(make([]*Subscription, 0, len(old)+1), old...)
	subs = append(subs, sub)
	e.subs.Store(&subs)
	return sub
}

// Events returns the channel the subscription's events arrive on. It is
// closed by [Subscription.Close] and by the engine's Close.
func (s *Subscription) Events() <-chan Event { return s.ch }

// Dropped returns how many events the subscription lost by falling behind.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close ends the subscription and closes its channel; events still in the
// channel can be read. Close is idempotent.
func (s *Subscription) Close() {
	s.e.pubMu.Lock()
	defer s.e.pubMu.Unlock()
	s.e.unsubscribe(s)
}

// unsubscribe removes s and closes its channel. Called with pubMu held.
func (e *Engine) unsubscribe(s *Subscription) {
	if s.closed {
		return
	}
	s.closed = true
	close(s.ch)
	var subs []*Subscription
	for _, o := range e.subscribers() {
		if o != s {
			subs = append(subs, o)
		}
	}
	e.subs.Store(&subs)
}

func (e *Engine) subscribers() []*Subscription {
	if p := e.subs.Load(); p != nil {
		return *p
	}
	return nil
}

// publish sends an event to every subscriber, never waiting: a full
// channel loses it. Called with the lock of the shard the change was in,
// so a user's events (and a member's in a room) are published in order.
// With no subscriber it does nothing, not even read the clock.
func (e *Engine) publish(kind EventKind, id, room string, at int64, now *reading) {
	p := e.subs.Load()
	if p == nil || len(*p) == 0 {
		return
	}
	if at == 0 {
		if now == nil {
			at = e.now().UnixNano()
		} else {
			at = now.ns()
		}
	}
	e.pubMu.Lock()
	e.deliverAll(Event{Kind: kind, ID: id, Room: room, At: time.Unix(0, at).UTC()})
	e.pubMu.Unlock()
}

// publishEach publishes an event of kind for each of ids, as publish does,
// at now, taking pubMu once: the sweeper's batches.
func (e *Engine) publishEach(kind EventKind, ids []string, room string, now *reading) {
	p := e.subs.Load()
	if p == nil || len(*p) == 0 || len(ids) == 0 {
		return
	}
	at := time.Unix(0, now.ns()).UTC()
	e.pubMu.Lock()
	for _, id := range ids {
		e.deliverAll(Event{Kind: kind, ID: id, Room: room, At: at})
	}
	e.pubMu.Unlock()
}

// deliverAll numbers ev and delivers it to every subscriber. Called with
// pubMu held.
func (e *Engine) deliverAll(ev Event) {
	e.seq++
	ev.Seq = e.seq
	for _, s := range *e.subs.Load() {
		s.deliver(ev)
	}
}

// deliver sends ev to s, or loses it if s's channel is full; after a loss,
// an Overflow goes first. Called with pubMu held.
func (s *Subscription) deliver(ev Event) {
	if s.owed {
		select {
		case s.ch <- Event{Kind: Overflow, At: ev.At, Seq: s.lost}:
			s.owed = false
		default:
			s.dropped.Add(1)
			s.e.dropped.Add(1)
			s.lost = ev.Seq
			return
		}
	}
	select {
	case s.ch <- ev:
	default:
		s.dropped.Add(1)
		s.e.dropped.Add(1)
		s.owed, s.lost = true, ev.Seq
	}
}

// Online returns how many users are online: held, or seen within the
// online window ([WithOnlineWindow]) and not released longer ago than the
// hold grace without being seen since. It reads the slot counters, as
// Count does.
func (e *Engine) Online() int {
	return max(0, e.Count(time.Duration(e.onlineWindow))-int(e.graceOff.Load()))
}

// startLive starts the sweeper, once: it sets every shard's edge to the
// start of the online window (users older than it are offline already),
// then sweeps each tick.
func (e *Engine) startLive() {
	e.startOnce.Do(func() {
		if e.startEdges() {
			go e.sweeper()
		}
	})
}

// startEdges readies the engine for sweeps, unless it is closed.
func (e *Engine) startEdges() bool {
	e.pubMu.Lock()
	closed := e.closing
	e.pubMu.Unlock()
	if closed {
		return false
	}
	now := e.clock(unread)
	edge := slotOf(now.ns()-e.onlineWindow, e.lay.res)
	// Stored first: a room made from now on starts at the edge, and
	// one made before is in roomMap for the loop below.
	e.edgeSlot.Store(edge)
	for _, s := range e.shards {
		s.startEdge(edge)
	}
	e.roomMap.Range(func(_ string, s *shard) bool {
		s.startEdge(edge)
		return true
	})
	e.stop, e.done = make(chan struct{}), make(chan struct{})
	e.started.Store(true)
	return true
}

func (e *Engine) sweeper() {
	defer close(e.done)
	t := time.NewTicker(e.tick)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			e.sweep()
		}
	}
}

// sweep moves every shard's edge to the start of the online window,
// publishing Offline (and Leave) for the users it passes, then looks at the
// releases whose grace has passed. Rooms with no member seen since the
// last edge have nothing to pass and are not visited.
func (e *Engine) sweep() {
	now := e.clock(unread)
	edge := slotOf(now.ns()-e.onlineWindow, e.lay.res)
	prev := e.edgeSlot.Swap(edge)
	if e.log != nil {
		defer e.logLost()
	}
	wait := e.tick / 2 // see awaitRoom
	for _, s := range e.shards {
		s.sweep(edge, &now, &wait)
	}
	if e.roomMap.Size() > 0 {
		for a := range e.roomIndex.Since(time.Unix(0, prev*e.lay.res)) {
			if s, ok := e.roomMap.Load(a.ID); ok {
				s.sweep(edge, &now, &wait)
			}
		}
	}
	for {
		e.graceMu.Lock()
		if len(e.graceQ) == 0 || e.graceQ[0].at+e.grace > now.ns() {
			e.graceMu.Unlock()
			return
		}
		c := e.graceQ[0]
		e.graceQ[0] = graceCheck{}
		e.graceQ = e.graceQ[1:]
		e.graceMu.Unlock()
		c.s.graceEnd(c.ent, c.id, c.at, &now)
	}
}

// closeLive stops the sweeper and closes every subscription.
func (e *Engine) closeLive() {
	e.stopOnce.Do(func() {
		e.pubMu.Lock()
		e.closing = true
		for _, s := range e.subscribers() {
			e.unsubscribe(s)
		}
		e.pubMu.Unlock()
		// Wait for a startLive in flight (it saw closing unset and will
		// start the sweeper); one after this sees closing and starts none.
		e.startOnce.Do(func() {})
		if e.started.Load() {
			close(e.stop)
			<-e.done
		}
	})
}

func (e *Engine) isClosed() bool { return e.closing }

// Hold makes id online, and counted as seen now by every query, until
// release is called (release is idempotent). Several holds of one user
// (tabs, devices) count once: Online at the first, Offline after the last
// release plus the hold grace ([WithHoldGrace]) unless the user is seen
// or held again meanwhile. Releasing sets the user's last-seen time to the
// release. An invalid id is ignored (counted in [Stats].RejectedIDs) and
// its release does nothing.
func (e *Engine) Hold(id string) (release func()) {
	if !validID(id) {
		e.rejectedIDs.Add(1)
		return func() {}
	}
	e.startLive()
	return e.hold(func(now *reading) *shard {
		e.touch(id, now.ns(), now)
		return e.shardOf(id)
	}, id)
}

// HoldIn holds id in room, and globally as Hold does: a member of the room,
// seen now in it, until release. An invalid room name holds id globally
// only (counted in [Stats].RejectedRooms).
func (e *Engine) HoldIn(room, id string) (release func()) {
	global := e.Hold(id)
	if !validID(id) {
		return global
	}
	if !ValidRoom(room) {
		e.rejectedRooms.Add(1)
		return global
	}
	inRoom := e.hold(func(now *reading) *shard {
		e.touchIn(room, id, now.ns(), now)
		s, _ := e.roomMap.Load(room)
		return s
	}, id)
	// The room is held in the room index too, so that Rooms lists it
	// while no one but its held members is active in it.
	ri := e.roomIndex
	inIndex := ri.hold(func(now *reading) *shard {
		ri.touch(room, now.ns(), now)
		return ri.shardOf(room)
	}, room)
	return func() { inRoom(); inIndex(); global() }
}

// hold files id as held in the shard enter returns, after enter records it
// as seen now there, and returns its release. A user removed between the
// two (or a room ended) is entered again.
func (e *Engine) hold(enter func(*reading) *shard, id string) func() {
	for {
		now := e.clock(unread)
		s := enter(&now)
		if s == nil {
			continue
		}
		if h := s.hold(id, &now); h != nil {
			var once atomic.Bool
			return func() {
				if once.CompareAndSwap(false, true) {
					now := e.clock(unread)
					if at, ok := s.release(id, h, &now); ok && s.room != "" {
						// Outside the room's lock, as every room-index write.
						e.roomIndex.touch(s.room, at, &now)
					}
				}
			}
		}
	}
}

// heldNs is the last-seen time of a held user (or member): beyond every
// time TouchAt accepts, so a Touch of a held user changes nothing, and
// filed in the newest slot of all, so every window holds it. Queries show
// it as now (Engine.seen); snapshots write now.
const heldNs = maxNano

// seen returns the last-seen time to show for ns: now for a held user.
func (e *Engine) seen(ns int64, now *reading) int64 {
	if ns == heldNs {
		return now.ns()
	}
	return ns
}

// holdSet is one user's holds in one shard. Guarded by the shard's lock.
type holdSet struct{ n int }

// The shard's part of events. Each method takes the lock; the helpers
// after them are called with it held.

// sweepBatch is how many users the sweeper passes per lock hold: a million
// going offline at once must not stall the touches of that shard.
const sweepBatch = 256

// roomFor reports whether every subscriber's channel has room for n more
// events (or is empty, if it holds fewer).
func (e *Engine) roomFor(n int) bool {
	if p := e.subs.Load(); p != nil {
		for _, sub := range *p {
			if cap(sub.ch)-len(sub.ch) < min(n, cap(sub.ch)) {
				return false
			}
		}
	}
	return true
}

// awaitRoom waits until every subscriber has room for a sweep's batch of
// events, or until the sweep has waited *wait in all (half a tick). The
// sweeper is the one producer of bursts (a million users going offline
// at once): waiting for the subscribers there lets one that keeps up on
// average receive all of a burst through a small buffer, and costs a
// stalled one at most half a tick's delay per sweep that has users to
// pass. It is called holding no lock, so no Touch, Hold or query waits
// with it, and it sleeps rather than spins, so that on a machine with few
// cores the subscribers get them.
func (e *Engine) awaitRoom(wait *time.Duration) {
	start := time.Now()
	for !e.roomFor(sweepBatch) {
		if time.Since(start) >= *wait {
			*wait = 0
			return
		}
		time.Sleep(20 * time.Microsecond)
	}
	*wait -= time.Since(start)
}

// startEdge moves the shard's edge to slot, if it is behind.
func (s *shard) startEdge(slot int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.lay.bound(slot); itemLess(s.edge, b) {
		s.edge = b
	}
}

// sweep moves the edge to slot, publishing Offline (or Leave) for each
// online user it passes, a batch per lock hold.
func (s *shard) sweep(slot int64, now *reading, wait *time.Duration) {
	end := s.lay.bound(slot)
	var batch []item
	var gone []string // the batch's users that go offline
	for {
		batch = batch[:0]
		s.mu.Lock()
		if !itemLess(s.edge, end) {
			s.mu.Unlock()
			return
		}
		s.tree.AscendRange(s.edge, end, func(it item) bool {
			if itemLess(s.edge, it) {
				batch = append(batch, it)
			}
			return len(batch) < sweepBatch
		})
		if len(batch) > 0 && *wait > 0 && !s.e.roomFor(len(batch)) {
			// Let the subscribers catch up, then take the batch again:
			// the shard may have changed meanwhile.
			s.mu.Unlock()
			s.e.awaitRoom(wait)
			continue
		}
		gone = gone[:0]
		for _, it := range batch {
			if s.online(it) {
				gone = append(gone, it.id())
			} else {
				s.forgive(it.id())
			}
		}
		s.e.publishEach(s.offKind(), gone, s.room, now)
		full := len(batch) == sweepBatch
		if full {
			s.edge = batch[len(batch)-1]
		} else {
			s.edge = end
		}
		s.mu.Unlock()
		if !full {
			return
		}
	}
}

// hold counts one more hold of id and returns its set, filing id as held
// at the first. It returns nil if id is not in the shard (or the room
// ended): the caller enters it again.
func (s *shard) hold(id string, now *reading) *holdSet {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return nil
	}
	ent, ok := s.live(id, now)
	if !ok {
		return nil
	}
	h := s.holds[id]
	if h == nil {
		id = ent.id(len(id))
		h = new(holdSet)
		if s.holds == nil {
			s.holds = make(map[string]*holdSet)
		}
		s.holds[id] = h
		s.e.holding.Add(1)
		old := itemOf(ent)
		was := s.online(old)
		ent.lastSeen.Store(heldNs)
		s.refile(ent, old, len(id), heldNs, now)
		s.forgive(id)
		if !was {
			s.announce(true, id, now.ns(), now)
		}
	}
	h.n++
	return h
}

// release ends one hold of h, id's set. At the last, id is filed as seen
// now, and checked again once the grace has passed; release then reports
// that time.
func (s *shard) release(id string, h *holdSet, now *reading) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.holds[id] != h || h.n == 0 {
		return 0, false // dropped meanwhile
	}
	if h.n--; h.n > 0 {
		return 0, false
	}
	delete(s.holds, id)
	s.e.holding.Add(-1)
	ent, ok := s.load(id)
	if !ok || ent.lastSeen.Load() != heldNs {
		return 0, false
	}
	at := now.ns()
	ent.lastSeen.Store(at)
	s.refile(ent, itemOf(ent), len(id), at, now)
	if e := s.e; e.started.Load() { // a room index has no sweeper, and needs no grace
		e.graceMu.Lock()
		e.graceQ = append(e.graceQ, graceCheck{s: s, ent: ent, id: ent.id(len(id)), at: at})
		e.graceMu.Unlock()
	}
	return at, true
}

// graceEnd makes id offline if it was last released at, as released, and
// neither seen nor held since.
func (s *shard) graceEnd(released *entry, id string, at int64, now *reading) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ent, ok := s.load(id)
	if !ok || ent != released || s.holds[id] != nil || ent.lastSeen.Load() != at {
		return
	}
	if s.online(itemOf(ent)) {
		if s.graceOff == nil {
			s.graceOff = make(map[string]struct{})
		}
		s.graceOff[ent.id(len(id))] = struct{}{}
		if s.room == "" {
			s.e.graceOff.Add(1)
		}
		s.announce(false, id, 0, now)
	}
}

// online reports whether the user filed as it is online as announced: at
// the edge or newer, and not offline by a hold's grace.
func (s *shard) online(it item) bool {
	if !itemLess(s.edge, it) {
		return false
	}
	if s.graceOff != nil {
		_, off := s.graceOff[it.id()]
		return !off
	}
	return true
}

// forgive takes id out of graceOff: it was seen again, or left.
func (s *shard) forgive(id string) {
	if s.graceOff == nil {
		return
	}
	if _, ok := s.graceOff[id]; ok {
		delete(s.graceOff, id)
		if s.room == "" {
			s.e.graceOff.Add(-1)
		}
	}
}

// announce publishes that id came online (or joined the room), or went
// offline (or left it), at ns (0: now).
func (s *shard) announce(online bool, id string, ns int64, now *reading) {
	kind := s.offKind()
	switch {
	case s.room == "" && online:
		kind = Online
	case online:
		kind = Join
	}
	s.e.publish(kind, id, s.room, ns, now)
}

// offKind is the kind of the shard's events for a user gone: Offline, or
// Leave in a room.
func (s *shard) offKind() EventKind {
	if s.room != "" {
		return Leave
	}
	return Offline
}

// refile moves ent, filed as old, to ns.
func (s *shard) refile(ent *entry, old item, n int, ns int64, now *reading) {
	s.unfile(old)
	s.file(ent, n, ns, now)
	s.e.markDirty()
}

// logLost logs the events subscribers lost since it last logged, if any:
// once a sweep at most, however many were lost.
func (e *Engine) logLost() {
	total := e.dropped.Load()
	if n := total - e.lostLogged; n > 0 {
		e.lostLogged = total
		e.log.Warn("presence: subscribers fell behind and lost events", "lost", n, "lost_total", total)
	}
}
