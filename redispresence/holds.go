package redispresence

import (
	"strings"
	"sync/atomic"

	"github.com/onlinenow/presence"
)

// Hold makes id online on every Store, and counted once however many
// Stores hold it, until release is called (release is idempotent): it is
// Enter("", id, nil) without the error. The hold is written to Redis at
// once, and each flush of this Store writes id's time as the flush's, so
// a user held anywhere stays in the window, and one held only on a Store
// that dies goes offline one window after its last flush, with no Store
// to tell. The last release writes its time. An invalid id is ignored.
func (s *Store) Hold(id string) (release func()) {
	if !s.acceptID(id) {
		return func() {}
	}
	return s.enter("", id, nil).Close
}

// HoldIn holds id in room, and globally as Hold does. An invalid room
// holds id globally only.
func (s *Store) HoldIn(room, id string) (release func()) {
	if !s.acceptID(id) {
		return func() {}
	}
	if !presence.ValidRoom(room) {
		s.rejectedRooms.Add(1)
		room = ""
	}
	return s.enter(room, id, nil).Close
}

// holds is one user's (or member's) holds on this Store. Guarded by
// heldMu; a Leave or a Forget takes it out of the map, which ends its
// holds' part there.
type holds struct{ n int }

// hold counts one more hold of k, for the flush, and returns its count and
// its release.
func (s *Store) hold(k entryKey) (*holds, func()) {
	k = entryKey{strings.Clone(k.room), strings.Clone(k.id)} // the map keeps it
	s.heldMu.Lock()
	h := s.held[k]
	if h == nil {
		h = new(holds)
		s.held[k] = h
	}
	h.n++
	s.heldMu.Unlock()
	s.raise(k, s.cfg.now().UnixNano())
	var once atomic.Bool
	return h, func() {
		if !once.CompareAndSwap(false, true) {
			return
		}
		s.heldMu.Lock()
		ours := s.held[k] == h
		if ours {
			if h.n--; h.n == 0 {
				delete(s.held, k)
			}
		}
		s.heldMu.Unlock()
		if ours { // a release after a Leave must not join again
			s.raise(k, s.cfg.now().UnixNano())
		}
	}
}

// unhold ends this Store's holds of the keys match accepts: a Leave's or
// a Forget's.
func (s *Store) unhold(match func(entryKey) bool) {
	s.heldMu.Lock()
	defer s.heldMu.Unlock()
	for k := range s.held {
		if match(k) {
			delete(s.held, k)
		}
	}
}

// touchHeld raises every held user and membership to now, before a flush.
func (s *Store) touchHeld() {
	s.heldMu.Lock()
	defer s.heldMu.Unlock()
	ns := s.cfg.now().UnixNano()
	for k := range s.held {
		s.raise(k, ns)
	}
}
