package redispresence

import (
	"strings"
	"sync/atomic"

	"github.com/onlinenow/presence"
)

// Hold makes id online on every Store, and counted once however many
// Stores hold it, until release is called (release is idempotent): each
// flush of this Store writes id's time as the flush's, so a user held
// anywhere stays in the window, and one held only on a Store that dies
// goes offline one window after its last flush, with no Store to tell.
// Holds of one user on one Store are counted; the last release writes
// its time. An invalid id is ignored.
func (s *Store) Hold(id string) (release func()) { return s.hold(entryKey{id: id}) }

// HoldIn holds id in room, and globally as Hold does. An invalid room
// holds id globally only.
func (s *Store) HoldIn(room, id string) (release func()) {
	global := s.Hold(id)
	if !presence.ValidRoom(room) {
		if presence.ValidID(id) {
			s.rejectedRooms.Add(1)
		}
		return global
	}
	inRoom := s.hold(entryKey{room, id})
	return func() { inRoom(); global() }
}

func (s *Store) hold(k entryKey) func() {
	if !s.acceptID(k.id) {
		return func() {}
	}
	k = entryKey{strings.Clone(k.room), strings.Clone(k.id)} // the map keeps it
	s.heldMu.Lock()
	s.held[k]++
	s.heldMu.Unlock()
	s.raise(k, s.cfg.now().UnixNano())
	var once atomic.Bool
	return func() {
		if !once.CompareAndSwap(false, true) {
			return
		}
		s.heldMu.Lock()
		if s.held[k]--; s.held[k] == 0 {
			delete(s.held, k)
		}
		s.heldMu.Unlock()
		s.raise(k, s.cfg.now().UnixNano())
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
