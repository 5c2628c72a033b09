package presence

import "sync"

// collector is what a walk reads: a shard (under its lock) or a clone of
// one's index.
type collector interface {
	collect(w window, buf []item) []item
}

// walk appends to sc.merged up to w.limit items of the window (w.limit <=
// 0: all), newest first, merged across shards. It reads a shard's first
// chunk at about twice its share of the limit, and another, after the last
// item read there, only when the merge has taken them all: a page of k costs
// O(shards x (log n + k/shards) + k x log shards), not O(shards x k).
func walk[S collector](sc *scratch, shards []S, w window) {
	per := w.limit // every item, in one read per shard, without a limit
	if w.limit > 0 {
		per = min(w.limit, 2*w.limit/len(shards)+4)
	}
	for len(sc.lists) < len(shards) {
		sc.lists = append(sc.lists, nil)
	}
	sc.heads = sc.heads[:0]
	for i, s := range shards {
		part := w
		part.limit = per
		sc.lists[i] = s.collect(part, sc.lists[i][:0])
		if len(sc.lists[i]) > 0 {
			sc.heads = append(sc.heads, walkHead{shard: i, more: per > 0 && len(sc.lists[i]) == per, per: per})
		}
	}
	for i := len(sc.heads)/2 - 1; i >= 0; i-- {
		sc.down(i)
	}
	for len(sc.heads) > 0 && (w.limit <= 0 || len(sc.merged) < w.limit) {
		top := &sc.heads[0]
		list := sc.lists[top.shard]
		sc.merged = append(sc.merged, list[top.next])
		if top.next++; top.next == len(list) {
			if !top.more {
				sc.pop()
				continue
			}
			if len(sc.merged) == w.limit {
				break // (more implies a limit)
			}
			// The next chunk: strictly after the last item read, twice as
			// long, but no longer than the merge still needs.
			part := w
			part.after, part.has = list[len(list)-1], true
			top.per = min(2*top.per, w.limit-len(sc.merged))
			part.limit = top.per
			list = shards[top.shard].collect(part, list[:0])
			sc.lists[top.shard], top.next, top.more = list, 0, len(list) == top.per
			if len(list) == 0 {
				sc.pop()
				continue
			}
		}
		sc.down(0)
	}
}

// walkHead is a shard's place in a walk: the next item of its list to merge.
type walkHead struct {
	shard int
	next  int  // in sc.lists[shard]
	more  bool // the list was read up to its limit: the shard may hold more
	per   int  // the limit the list was read with
}

// scratch holds a page walk's buffers between calls, so that a dashboard
// polling Recent does not allocate for every call.
type scratch struct {
	lists  [][]item   // one per shard
	heads  []walkHead // a binary heap of the shards with items left, newest head first
	merged []item
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// before reports whether heads[i]'s next item is newer than heads[j]'s.
func (sc *scratch) before(i, j int) bool {
	a, b := &sc.heads[i], &sc.heads[j]
	return itemLess(sc.lists[b.shard][b.next], sc.lists[a.shard][a.next])
}

// down restores the heap below i.
func (sc *scratch) down(i int) {
	for {
		m, l, r := i, 2*i+1, 2*i+2
		if l < len(sc.heads) && sc.before(l, m) {
			m = l
		}
		if r < len(sc.heads) && sc.before(r, m) {
			m = r
		}
		if m == i {
			return
		}
		sc.heads[i], sc.heads[m] = sc.heads[m], sc.heads[i]
		i = m
	}
}

// pop removes the first shard, which has no items left.
func (sc *scratch) pop() {
	last := len(sc.heads) - 1
	sc.heads[0] = sc.heads[last]
	sc.heads = sc.heads[:last]
	sc.down(0)
}

// maxPooledItems bounds what a scratch keeps.
const maxPooledItems = 1 << 14

func (sc *scratch) release() {
	n := cap(sc.merged)
	for i, l := range sc.lists {
		n += cap(l)
		clear(l[:cap(l)]) // drop the pointers into users, from longer reads too
		sc.lists[i] = l[:0]
	}
	clear(sc.merged)
	sc.merged = sc.merged[:0]
	sc.heads = sc.heads[:0]
	if n <= maxPooledItems {
		scratchPool.Put(sc)
	}
}
