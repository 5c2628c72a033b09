package presence

import (
	"math"
	"time"
	"unsafe"

	"github.com/google/btree"
)

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
	e.hub.mu.Lock()
	closed := e.hub.isClosed()
	e.hub.mu.Unlock()
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
	e.dueOn.Store(true) // rooms filing members from now on schedule themselves
	e.roomMap.Range(func(_ string, s *shard) bool {
		s.startEdge(edge)
		s.reschedule()
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
// releases whose grace has passed. A room is visited only once the edge
// passes the member it is due at (see dueRoom): an idle engine's sweep
// costs O(shards), however many rooms have members online.
func (e *Engine) sweep() {
	now := e.clock(unread)
	edge := slotOf(now.ns()-e.onlineWindow, e.lay.res)
	e.edgeSlot.Store(edge)
	if e.log != nil {
		defer e.logLost()
	}
	wait := e.tick / 2 // see awaitRoom
	for _, s := range e.shards {
		s.sweep(edge, &now, &wait)
	}
	for _, s := range e.dueBefore(edge) {
		s.sweep(edge, &now, &wait)
		s.reschedule()
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
		e.hub.Close()
		// Wait for a startLive in flight (it saw the hub open and will
		// start the sweeper); one after this sees it closed and starts none.
		e.startOnce.Do(func() {})
		if e.started.Load() {
			close(e.stop)
			<-e.done
		}
	})
}

// sweepBatch is how many users the sweeper passes per lock hold: a million
// going offline at once must not stall the touches of that shard.
const sweepBatch = 256

// roomFor reports whether every unscoped subscriber's channel has room
// for n more events (or is empty, if it holds fewer). A scoped one gets
// few of a batch's events, and there may be many of them: not waited for.
func (e *Engine) roomFor(n int) bool {
	h := &e.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, sub := range h.every {
		if cap(sub.ch)-len(sub.ch) < min(n, cap(sub.ch)) {
			return false
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
		batch = s.idx.crossed(s.edge, end, sweepBatch, batch)
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

// logLost logs the events subscribers lost since it last logged, if any:
// once a sweep at most, however many were lost.
func (e *Engine) logLost() {
	total := e.hub.Dropped()
	if n := total - e.lostLogged; n > 0 {
		e.lostLogged = total
		e.log.Warn("presence: subscribers fell behind and lost events", "lost", n, "lost_total", total)
	}
}

// dueRoom is a room in the sweep's schedule: due at the slot of its oldest
// member above its edge, which is the first the sweep may find offline.
// Members only move newer, so a room is never late: at worst it is
// visited early (its oldest member was seen again meanwhile), finds
// nothing to pass, and is scheduled again. A member filed older than the
// slot a room is due at (a TouchInAt in the past, a release) moves the
// room ahead (shard.file).
type dueRoom struct {
	slot int64
	s    *shard
}

// noDue is the due slot of a room with no member above its edge.
const noDue = math.MaxInt64

func dueLess(a, b dueRoom) bool {
	if a.slot != b.slot {
		return a.slot < b.slot
	}
	return uintptr(unsafe.Pointer(a.s)) < uintptr(unsafe.Pointer(b.s))
}

// setDue schedules s, a room, at slot (noDue: not at all). Called with s's
// lock held; the schedule's lock comes after every room's.
func (e *Engine) setDue(s *shard, slot int64) {
	if slot == s.due {
		return
	}
	e.dueMu.Lock()
	if e.due == nil {
		e.due = btree.NewG(32, dueLess)
	}
	if s.due != noDue {
		e.due.Delete(dueRoom{s.due, s})
	}
	if slot != noDue {
		e.due.ReplaceOrInsert(dueRoom{slot, s})
	}
	s.due = slot
	e.dueMu.Unlock()
}

// dueBefore takes out of the schedule the rooms due before slot and returns
// them; the sweep schedules each again after its visit.
func (e *Engine) dueBefore(slot int64) []*shard {
	e.dueMu.Lock()
	defer e.dueMu.Unlock()
	var out []*shard
	for e.due != nil {
		d, ok := e.due.Min()
		if !ok || d.slot >= slot {
			break
		}
		e.due.DeleteMin()
		out = append(out, d.s)
	}
	return out
}

// reschedule schedules the room at its oldest member above its edge.
func (s *shard) reschedule() {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := int64(noDue)
	if it, ok := s.idx.firstAfter(s.edge); ok {
		next = s.lay.slot(it)
	}
	s.e.setDue(s, next)
}
