package presence

import (
	"iter"
	"math"
	"time"
)

// Get returns a user's activity, or false if the user is unknown or expired.
// Its LastSeen is exact.
func (e *Engine) Get(id string) (Activity, bool) {
	ent, ok := e.users.Load(id)
	if !ok {
		return Activity{}, false
	}
	now := e.clock(unread)
	ls := ent.lastSeen.Load()
	if !e.alive(ls, &now) {
		return Activity{}, false
	}
	return e.activity(nil, id, ls), true
}

// activity is id's Activity, last seen at ls in room (nil: globally).
func (e *Engine) activity(room *shard, id string, ls int64) Activity {
	meta, _ := e.metas.Load(id)
	a := Activity{ID: id, Meta: meta}
	if a.Held = ls == heldNs; a.Held {
		ls = e.now().UnixNano()
		if room == nil {
			room = e.shardOf(id)
		}
		a.Data = room.dataOf(id)
	}
	a.LastSeen = time.Unix(0, ls).UTC()
	return a
}

// LastSeen returns a user's exact last-seen time, or false if the user is
// unknown or expired.
func (e *Engine) LastSeen(id string) (time.Time, bool) {
	a, ok := e.Get(id)
	return a.LastSeen, ok
}

// Len returns the number of users held, not counting expired ones. Without
// retention it adds one counter per shard and takes no lock; with it, it
// counts the retention window, capped by the users held. It is never above
// WithMaxUsers.
func (e *Engine) Len() int {
	if e.retention == 0 {
		return e.held()
	}
	return min(e.countFrom(e.from(time.Time{})), e.held())
}

// held returns the users the shards hold, expired ones included until
// removed, clamped to the cap (a sum under writes can pass it by a few).
func (e *Engine) held() int {
	n := int64(0)
	for _, s := range e.shards {
		n += s.held.Load()
	}
	if e.maxUsers > 0 {
		n = min(n, e.maxUsers)
	}
	return int(n)
}

// from is the oldest slot a query of the users seen since t reads: t's,
// or the retention's floor if that is newer. The zero t reads everyone.
func (e *Engine) from(t time.Time) int64 {
	from := int64(math.MinInt64)
	if ns, ok := unixNano(t); ok {
		from = slotOf(ns, e.lay.res)
	}
	now := e.clock(unread)
	return max(from, e.floor(&now))
}

// Count returns the number of users seen within window of now:
// CountSince(now - window).
func (e *Engine) Count(window time.Duration) int {
	return e.CountSince(e.now().Add(-window))
}

// CountSince returns the number of users whose last-seen time is t or later,
// at the resolution: users seen in t's slot before t count too. It reads
// per-slot counters, O(shards x 300) words whatever the window holds, while
// t is within the horizon (see the package doc). The zero t counts everyone.
func (e *Engine) CountSince(t time.Time) int { return e.countFrom(e.from(t)) }

func (e *Engine) countFrom(from int64) int {
	total := 0
	for _, s := range e.shards {
		total += s.count(from)
	}
	return total
}

// Recent returns the users seen within window of now, newest first, at most
// limit of them (limit <= 0: all). It costs O(shards x (log n +
// limit/shards) + limit x log shards).
func (e *Engine) Recent(window time.Duration, limit int) []Activity {
	page, _ := e.Page(e.now().Add(-window), Cursor{}, limit)
	return page
}

// Page returns up to limit users seen since t (as in [Engine.CountSince]),
// newest first, starting strictly after the cursor after (the zero Cursor
// starts at the newest user). It also returns the cursor of the next page,
// which is the zero Cursor when this page was the last.
//
// Walking all pages yields every user that stays in the window exactly once,
// however many share one timestamp. A user touched between pages moves ahead
// of the cursor: it is not returned again, nor at all if the walk had not
// reached it yet (see the package doc). A user removed and seen again is new
// to the walk. The order is by slot, newest first, then by the time each user
// entered it (see the package doc). limit <= 0 returns all the rest.
func (e *Engine) Page(t time.Time, after Cursor, limit int) ([]Activity, Cursor) {
	return e.page(e.shards, 0, t, after, limit)
}

// CheckCursor returns nil if c is the zero Cursor or was returned by
// [Engine.Page], and an error wrapping [ErrInvalidCursor] otherwise (a room's
// cursor). Page answers a cursor it refuses with an empty last page.
func (e *Engine) CheckCursor(c Cursor) error { return c.check(0) }

// OnlinePage returns up to limit users online now (as [Engine.Online]
// counts them: held, or seen within the online window and not gone by a
// hold's grace), newest first, after the cursor, as [Engine.Page] does. With
// events on (a subscription or a hold started the sweeper), it lists a
// user exactly between its Online event and its Offline: the window's
// edge is where the sweeper last moved it. A held user's Activity.Data
// lists its connections.
func (e *Engine) OnlinePage(after Cursor, limit int) ([]Activity, Cursor) {
	return e.onlinePage(e.shards, 0, after, limit)
}

// onlineSlot is the oldest slot of the users online as announced: the
// one the sweeper last moved the edge to or, before it runs, the online
// window's first.
func (e *Engine) onlineSlot() int64 {
	if e.started.Load() {
		return max(e.edgeSlot.Load(), e.from(time.Time{}))
	}
	return e.from(e.now().Add(-time.Duration(e.onlineWindow)))
}

// onlinePage walks from the oldest slot once the sweeper runs: each
// shard's own edge stops its walk, and during a sweep some lag the
// engine's.
func (e *Engine) onlinePage(shards []*shard, scope uint32, after Cursor, limit int) ([]Activity, Cursor) {
	from := e.from(time.Time{})
	if !e.started.Load() {
		from = e.onlineSlot()
	}
	return e.walkPage(shards, scope, window{from: from, online: true}, after, limit)
}

// page is a page of the walk of shards, whose cursors have the given scope.
func (e *Engine) page(shards []*shard, scope uint32, t time.Time, after Cursor, limit int) ([]Activity, Cursor) {
	return e.walkPage(shards, scope, window{from: e.from(t)}, after, limit)
}

// walkPage is a page of w (from and online set) after the cursor.
func (e *Engine) walkPage(shards []*shard, scope uint32, w window, after Cursor, limit int) ([]Activity, Cursor) {
	if after.check(scope) != nil || len(shards) == 0 {
		return []Activity{}, Cursor{}
	}
	w.limit = limit
	if after.set {
		w.after, w.has = item{key: after.key, ent: newEntry(after.id)}, true
	}
	if limit > 0 {
		w.limit = limit + 1 // one more, to know whether a next page exists
	}
	sc := scratchPool.Get().(*scratch)
	defer sc.release()
	walk(sc, shards, w)
	items := sc.merged
	var next Cursor
	if limit > 0 && len(items) > limit {
		items = items[:limit]
		last := items[limit-1]
		next = Cursor{key: last.key, id: last.id(), scope: scope, set: true}
	}
	var room *shard
	if scope != 0 {
		room = shards[0]
	}
	out := make([]Activity, len(items))
	for i, it := range items {
		out[i] = e.activity(room, it.id(), it.ent.lastSeen.Load())
	}
	return out, next
}

// Since returns an iterator over the users seen since t, newest first, in
// the order of [Engine.Page]. It reads the index a page at a time and holds
// no lock while the loop body runs, with the same guarantees as paging.
func (e *Engine) Since(t time.Time) iter.Seq[Activity] {
	return func(yield func(Activity) bool) {
		var cur Cursor
		for {
			page, next := e.Page(t, cur, pageBatch)
			for _, a := range page {
				if !yield(a) {
					return
				}
			}
			if next.IsZero() {
				return
			}
			cur = next
		}
	}
}
