package presence

import (
	"sync/atomic"
)

// Hold makes id online, and counted as seen now by every query, until
// release is called (release is idempotent). Several holds of one user
// (tabs, devices) count once: Online at the first, Offline after the last
// release plus the hold grace ([WithHoldGrace]) unless the user is seen
// or held again meanwhile. Releasing sets the user's last-seen time to the
// release. An invalid id is ignored (counted in [Stats].RejectedIDs) and
// its release does nothing.
func (e *Engine) Hold(id string) (release func()) {
	if !ValidID(id) {
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
	if !ValidID(id) {
		return global
	}
	if !ValidRoom(room) {
		e.rejectedRooms.Add(1)
		return global
	}
	var rs *shard // the room the hold is in
	inRoom := e.hold(func(now *reading) *shard {
		e.touchIn(room, id, now.ns(), now)
		rs, _ = e.roomMap.Load(room)
		return rs
	}, id)
	// The room is held in the room index too, so that Rooms lists it
	// while no one but its held members is active in it.
	now := e.clock(unread)
	inIndex := e.holdRoom(rs, &now)
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
						e.activate(s, at, &now)
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

// The shard's part of holds. Each method takes the lock; the helpers
// after them are called with it held.

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
	if e := s.e; e.started.Load() { // without a sweeper, no one goes offline: no grace to check
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

// refile moves ent, filed as old, to ns.
func (s *shard) refile(ent *entry, old item, n int, ns int64, now *reading) {
	s.unfile(old)
	s.file(ent, n, ns, now)
	s.e.markDirty()
}
