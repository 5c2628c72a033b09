package presence

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
)

// Conn is one connection of a user, held open by [Backend.Enter] (or
// [Engine.Enter]) with its presence data: a tab, a device, a websocket.
// While it is open its user is online and a member of its room; Update
// replaces its data in place, published as an Update event; Close ends it.
//
// A Conn is safe for concurrent use.
type Conn interface {
	// Update replaces the connection's data (at most MaxDataLen bytes, or
	// an error wrapping ErrDataTooLarge and nothing changes). An Update
	// event follows, globally and in the connection's room. Update of a
	// closed connection, or of one whose user was forgotten or left the
	// room meanwhile, returns an error wrapping ErrClosed.
	Update(data []byte) error
	// Close releases the connection, as a Hold's release: idempotent.
	Close()
}

// Hold makes id online, and counted as seen now by every query, until
// release is called (release is idempotent). Several holds of one user
// (tabs, devices) count once: Online at the first, Offline after the last
// release plus the hold grace ([WithHoldGrace]) unless the user is seen
// or held again meanwhile. Releasing sets the user's last-seen time to the
// release. An invalid id is ignored (counted in [Stats].RejectedIDs) and
// its release does nothing. Hold is Enter("", id, nil) without the error.
func (e *Engine) Hold(id string) (release func()) {
	if !ValidID(id) {
		e.rejectedIDs.Add(1)
		return func() {}
	}
	return e.enter("", id, nil).Close
}

// HoldIn holds id in room, and globally as Hold does: a member of the room,
// seen now in it, until release. An invalid room name holds id globally
// only (counted in [Stats].RejectedRooms).
func (e *Engine) HoldIn(room, id string) (release func()) {
	if !ValidID(id) {
		e.rejectedIDs.Add(1)
		return func() {}
	}
	if !ValidRoom(room) {
		e.rejectedRooms.Add(1)
		room = ""
	}
	return e.enter(room, id, nil).Close
}

// Enter opens a connection of id in room ("": globally only) with data,
// as HoldIn holds: id is online, and a member of room, until the Conn is
// closed. Its data is listed with the user (and the member) by the
// queries' Activity.Data and carried by its events: the first connection
// of a user who was not online brings Online (Join in the room) with it,
// and every other change of a user's connections while it is online (one
// more, one fewer, an Update, the first hold of a user online by a touch)
// is an Update event, globally and in the room.
//
// data is copied; it may be nil. Enter returns an error wrapping
// ErrInvalidID or ErrInvalidRoom (counted in Stats) or ErrDataTooLarge.
func (e *Engine) Enter(room, id string, data []byte) (Conn, error) {
	if err := CheckEnter(room, id, data); err != nil {
		if errors.Is(err, ErrInvalidID) {
			e.rejectedIDs.Add(1)
		} else if errors.Is(err, ErrInvalidRoom) {
			e.rejectedRooms.Add(1)
		}
		return nil, err
	}
	return e.enter(room, id, slices.Clone(data)), nil
}

// CheckEnter returns the error Enter of id in room ("": none) with data
// returns in every backend, or nil: one wrapping ErrInvalidID,
// ErrInvalidRoom or ErrDataTooLarge.
func CheckEnter(room, id string, data []byte) error {
	switch {
	case !ValidID(id):
		return fmt.Errorf("enter: %w", ErrInvalidID)
	case room != "" && !ValidRoom(room):
		return fmt.Errorf("enter %q: %w", room, ErrInvalidRoom)
	}
	return CheckData(data)
}

// CheckData returns nil if data may be a connection's, or an error
// wrapping ErrDataTooLarge.
func CheckData(data []byte) error {
	if len(data) > MaxDataLen {
		return fmt.Errorf("presence data of %d bytes: %w", len(data), ErrDataTooLarge)
	}
	return nil
}

// conn is a Conn of the engine: a connection filed in the user's shard
// and, with a room, in the room's. Each keeps its own copy of the data,
// guarded by that shard's lock.
type conn struct {
	e            *Engine
	id, room     string
	user, member *connData // member is nil without a room
	global, in   *shard    // the shards they are filed in
	closeRoom    func()    // releases the room index's hold
	closed       atomic.Bool
}

// connData is a connection's data in one shard. Guarded by its lock.
type connData struct{ data []byte }

// enter opens a connection of id (valid) in room (valid, or "").
func (e *Engine) enter(room, id string, data []byte) *conn {
	e.startLive()
	c := &conn{e: e, id: id, room: room, user: &connData{data}}
	c.global = e.hold(func(now *reading) *shard {
		e.touch(id, now.ns(), now)
		return e.shardOf(id)
	}, "", id, c.user)
	if room == "" {
		return c
	}
	c.member = &connData{data}
	c.in = e.hold(func(now *reading) *shard {
		e.touchIn(room, id, now.ns(), now)
		rs, _ := e.roomMap.Load(room)
		return rs
	}, room, id, c.member)
	// The room is held in the room index too, so that Rooms lists it
	// while no one but its held members is active in it.
	now := e.clock(unread)
	c.closeRoom = e.holdRoom(c.in, &now)
	return c
}

func (c *conn) Update(data []byte) error {
	if err := CheckData(data); err != nil {
		return err
	}
	if c.closed.Load() {
		return fmt.Errorf("update: %w", ErrClosed)
	}
	data = slices.Clone(data)
	now := c.e.clock(unread)
	ok := c.global.update(c.id, c.user, data, &now)
	if c.in != nil && c.in.update(c.id, c.member, data, &now) {
		ok = true
	}
	if !ok {
		return fmt.Errorf("update: %w", ErrClosed)
	}
	return nil
}

func (c *conn) Close() {
	if !c.closed.CompareAndSwap(false, true) {
		return
	}
	if c.in != nil {
		now := c.e.clock(unread)
		if at, ok := c.in.release(c.id, c.member, &now); ok {
			// Outside the room's lock, as every room-index write.
			c.e.activate(c.in, at, &now)
		}
		c.closeRoom()
	}
	now := c.e.clock(unread)
	c.global.release(c.id, c.user, &now)
}

// hold files id as held with the connection d in the shard enter returns,
// after enter records it as seen now there, and returns that shard. A
// user removed between the two (or a room ended) is entered again. If
// enter's touch brings the user online, the connection is filed by it,
// under the same lock (see cameOnline), so that its Online (Join) carries
// the data and no other writer sees the user online and not held.
func (e *Engine) hold(enter func(*reading) *shard, room, id string, d *connData) *shard {
	for {
		now := e.clock(unread)
		c := &connecting{d: d, room: room}
		now.conn = c
		s := enter(&now)
		if c.in != nil {
			return c.in
		}
		now.conn = nil
		if s != nil && s.hold(id, d, &now) {
			return s
		}
	}
}

// connecting is a connection Engine.hold files: by the touch that brings
// its user online in the shard of room, or after it.
type connecting struct {
	d    *connData
	room string
	in   *shard // where the touch filed it
}

// cameOnline announces that id, filed as ent, came online (or joined the
// room), holding it with the connection being filed, if any is for this
// shard.
func (s *shard) cameOnline(ent *entry, id string, ns int64, now *reading) {
	c := now.conn
	if c == nil || c.in != nil || c.room != s.room {
		s.announce(true, id, ns, now)
		return
	}
	c.in = s
	s.holdEntry(ent, id, c.d, false, now)
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

// holdSet is one user's open connections in one shard, in the order they
// opened. Guarded by the shard's lock.
type holdSet struct{ conns []*connData }

// list returns the connections' data: one entry per connection, nil for
// one without data. The slices are never written after they are set.
func (h *holdSet) list() [][]byte {
	if h == nil || len(h.conns) == 0 {
		return nil
	}
	out := make([][]byte, len(h.conns))
	for i, d := range h.conns {
		out[i] = d.data
	}
	return out
}

// The shard's part of holds. Each method takes the lock; the helpers
// after them are called with it held.

// hold files d as one more connection of id, filing id as held at the
// first, and publishes the change: Online (Join) if id was not online, an
// Update otherwise. It returns false if id is not in the shard (or the
// room ended): the caller enters it again.
func (s *shard) hold(id string, d *connData, now *reading) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return false
	}
	ent, ok := s.live(id, now)
	if !ok {
		return false
	}
	s.holdEntry(ent, id, d, s.online(itemOf(ent)), now)
	return true
}

// holdEntry files d as a connection of id, filed as ent, and publishes
// Online (Join), or an Update if id was online.
func (s *shard) holdEntry(ent *entry, id string, d *connData, was bool, now *reading) {
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
		ent.lastSeen.Store(heldNs)
		s.refile(ent, old, len(id), heldNs, now)
		s.forgive(id)
	}
	h.conns = append(h.conns, d)
	kind := Update
	if !was {
		kind = s.onKind()
	}
	s.publishConns(kind, id, h, now)
}

// changed publishes an Update of id, whose connections are h.
func (s *shard) changed(id string, h *holdSet, now *reading) { s.publishConns(Update, id, h, now) }

// publishConns publishes an event of kind for id with its connections h.
func (s *shard) publishConns(kind EventKind, id string, h *holdSet, now *reading) {
	if s.e.hub.Active() {
		s.e.publishData(kind, id, s.room, now.ns(), h.list())
	}
}

// update replaces d's data, if d is still one of id's connections, and
// publishes the Update.
func (s *shard) update(id string, d *connData, data []byte, now *reading) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.holds[id]
	if h == nil || !slices.Contains(h.conns, d) {
		return false // dropped meanwhile
	}
	d.data = data
	s.changed(id, h, now)
	return true
}

// release ends the connection d of id. At the last, id is filed as seen
// now, and checked again once the grace has passed; release then reports
// that time. The user stays online meanwhile: an Update says it has one
// connection fewer.
func (s *shard) release(id string, d *connData, now *reading) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.holds[id]
	i := -1
	if h != nil {
		i = slices.Index(h.conns, d)
	}
	if i < 0 {
		return 0, false // dropped meanwhile
	}
	if h.conns = slices.Delete(h.conns, i, i+1); len(h.conns) > 0 {
		s.changed(id, h, now)
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
	s.changed(id, nil, now)
	if e := s.e; e.started.Load() { // without a sweeper, no one goes offline: no grace to check
		e.graceMu.Lock()
		e.graceQ = append(e.graceQ, graceCheck{s: s, ent: ent, id: ent.id(len(id)), at: at})
		e.graceMu.Unlock()
	}
	return at, true
}

// dataOf returns the data of id's connections in the shard.
func (s *shard) dataOf(id string) [][]byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.holds[id].list()
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

// graceOffLen returns how many users the shard holds gone by a grace.
func (s *shard) graceOffLen() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.graceOff)
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

// refile moves ent, filed as old, to ns.
func (s *shard) refile(ent *entry, old item, n int, ns int64, now *reading) {
	s.unfile(old)
	s.file(ent, n, ns, now)
	s.e.markDirty()
}
