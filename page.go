package presence

import "sync"

// window is one walk of the index: users filed at slot from or newer,
// strictly after cursor, newest first, at most limit of them (limit <= 0: all).
type window struct {
	from  int64
	after item // the cursor, if has; otherwise start at the newest
	has   bool
	limit int
}

// walk appends to sc.merged up to w.limit items of the window (w.limit <=
// 0: all), newest first, merged across shards. It reads each shard a
// chunk at a time: a first chunk of about twice the shard's share of the
// limit, and another, after the last item it read there, only when the
// merge has taken every item read from that shard. So a page of k users
// costs O(shards x (log n + k/shards) + k x log shards), not the
// O(shards x k) of reading k from every shard, which at 256 shards (the
// default at 64 cores) would read 25,600 items for a page of 100.
func (sc *scratch) walk(shards []*shard, w window) {
	per := w.limit // every item, in one read per shard, without a limit
	if w.limit > 0 {
		per = min(w.limit, 2*w.limit/len(shards)+4)
	}
	for len(sc.lists) < len(shards) {
		sc.lists = append(sc.lists, nil)
	}
	h := &sc.heads
	h.s = h.s[:0]
	for i, s := range shards {
		part := w
		part.limit = per
		sc.lists[i] = s.collect(part, sc.lists[i][:0])
		if len(sc.lists[i]) > 0 {
			h.s = append(h.s, walkHead{shard: i, more: per > 0 && len(sc.lists[i]) == per, per: per})
		}
	}
	h.init()
	for len(h.s) > 0 && (w.limit <= 0 || len(sc.merged) < w.limit) {
		top := &h.s[0]
		list := sc.lists[top.shard]
		sc.merged = append(sc.merged, list[top.next])
		if top.next++; top.next == len(list) {
			if !top.more {
				h.pop()
				continue
			}
			if len(sc.merged) == w.limit {
				break // (more implies a limit)
			}
			// The shard's next chunk starts strictly after its last item
			// read, as the next page would: twice as long, but no longer
			// than the merge still needs.
			part := w
			part.after, part.has = list[len(list)-1], true
			top.per = min(2*top.per, w.limit-len(sc.merged))
			part.limit = top.per
			list = shards[top.shard].collect(part, list[:0])
			sc.lists[top.shard], top.next, top.more = list, 0, len(list) == top.per
			if len(list) == 0 {
				h.pop()
				continue
			}
		}
		h.fix()
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
// polling Recent does not allocate (and make the collector scan a large
// heap) for every call.
type scratch struct {
	lists  [][]item            // one per shard
	heads  mergeHeap[walkHead] // the shards with items left to merge, newest head first
	merged []item
}

var scratchPool = sync.Pool{New: func() any {
	sc := new(scratch)
	sc.heads.less = func(a, b *walkHead) bool {
		return itemLess(sc.lists[b.shard][b.next], sc.lists[a.shard][a.next])
	}
	return sc
}}

// maxPooledItems bounds what a scratch keeps: a walk of everything is not
// worth holding on to.
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
	sc.heads.s = sc.heads.s[:0]
	if n <= maxPooledItems {
		scratchPool.Put(sc)
	}
}
