package presence

import "github.com/google/btree"

// index is a time index: items ordered by time (a B-tree of the items of
// key.go, oldest first) and, if counted, how many items each slot holds
// (slotCounts, counts.go), so that "how many since t" reads counters and
// "who, newest first" walks the tree in O(log n + k). It knows nothing of
// users, rooms or events: a shard files its users in one, a room its
// members, and the engine decides what a change means.
//
// Not safe for concurrent use: its owner's lock guards it. A clone (from
// clone) is a copy-on-write snapshot that may be read without that lock.
type index struct {
	tree    *btree.BTreeG[item]
	counts  slotCounts
	lay     layout
	counted bool // counts is kept
}

// treeDegree gives nodes of up to 255 items (4 KiB). Moves delete from cold,
// half-full nodes, which google/btree refills on the way down; degree 128
// moves faster than 32 and takes fewer bytes a user (BENCHMARKS.md).
const treeDegree = 128

// newIndex returns an empty index of layout lay whose counters, if counted,
// cover horizon slots.
func newIndex(lay layout, horizon int64, counted bool) index {
	return index{
		tree:    btree.NewG(treeDegree, itemLess),
		counts:  slotCounts{horizon: horizon, res: lay.res},
		lay:     lay,
		counted: counted,
	}
}

// len returns how many items the index holds.
func (x *index) len() int { return x.tree.Len() }

// insert files it, counting it in its slot.
func (x *index) insert(it item, now *reading) {
	x.tree.ReplaceOrInsert(it)
	if x.counted {
		x.counts.add(x.lay.slot(it), 1, now)
	}
}

// remove takes it out. The counter goes first, so its likely cache miss
// overlaps the tree's search.
func (x *index) remove(it item) {
	if x.counted {
		x.counts.add(x.lay.slot(it), -1, nil)
	}
	x.tree.Delete(it)
}

// min returns the oldest item, or false if the index is empty.
func (x *index) min() (item, bool) { return x.tree.Min() }

// startCounting makes an index kept without counters keep them, counting
// what it holds: a room that grew past the size where a walk is cheaper.
func (x *index) startCounting(now *reading) {
	if x.counted {
		return
	}
	x.counted = true
	x.tree.Ascend(func(it item) bool {
		x.counts.add(x.lay.slot(it), 1, now)
		return true
	})
}

// count returns how many items are filed at slot from or newer: the
// counters' sum, plus a walk of the items older than the ring if needed (or
// of all, without counters).
func (x *index) count(from int64) int {
	n, complete := 0, false
	if x.counted {
		n, complete = x.counts.since(from)
	}
	if complete {
		return n
	}
	end := item{key: emptyKey}
	if x.counted {
		end = x.lay.bound(x.counts.head - x.counts.horizon + 1)
	}
	x.tree.AscendRange(x.lay.bound(from), end, func(item) bool {
		n++
		return true
	})
	return n
}

// window is one walk of an index: items filed at slot from or newer,
// strictly after cursor, newest first, at most limit of them (limit <= 0:
// all).
type window struct {
	from  int64
	after item // the cursor, if has; otherwise start at the newest
	has   bool
	limit int
	// online: only the users online as announced (shard.collect sets what
	// follows from the shard's edge and grace).
	online  bool
	stop    item // with hasStop, items at it or older are out
	hasStop bool
	skip    map[string]struct{} // items of these IDs are out
}

// collect appends up to w.limit items of the window to buf, newest first,
// in O(log n + k).
func (x *index) collect(w window, buf []item) []item {
	visit := func(it item) bool {
		if x.lay.slot(it) < w.from || w.hasStop && !itemLess(w.stop, it) {
			return false
		}
		if w.has && !itemLess(it, w.after) {
			return true // the cursor itself
		}
		if w.skip != nil {
			if _, ok := w.skip[it.id()]; ok {
				return true
			}
		}
		buf = append(buf, it)
		return w.limit <= 0 || len(buf) < w.limit
	}
	if w.has {
		x.tree.DescendLessOrEqual(w.after, visit)
	} else {
		x.tree.Descend(visit)
	}
	return buf
}

// crossed is the edge walk: it appends to buf, oldest first, up to limit
// items strictly after edge and before end, the items a window's start
// passes as it moves from edge to end.
func (x *index) crossed(edge, end item, limit int, buf []item) []item {
	x.tree.AscendRange(edge, end, func(it item) bool {
		if itemLess(edge, it) {
			buf = append(buf, it)
		}
		return len(buf) < limit
	})
	return buf
}

// firstAfter returns the oldest item strictly after edge, or false.
func (x *index) firstAfter(edge item) (item, bool) {
	var first item
	found := false
	x.tree.AscendGreaterOrEqual(edge, func(it item) bool {
		if itemLess(edge, it) {
			first, found = it, true
			return false
		}
		return true
	})
	return first, found
}

// before calls fn with the items before end, oldest first, from from on
// (from the oldest, if from.ent is nil), while fn returns true.
func (x *index) before(from, end item, fn func(item) bool) {
	if from.ent == nil {
		x.tree.AscendLessThan(end, fn)
	} else {
		x.tree.AscendRange(from, end, fn)
	}
}

// all returns every item, oldest first.
func (x *index) all() []item {
	out := make([]item, 0, x.tree.Len())
	x.tree.Ascend(func(it item) bool {
		out = append(out, it)
		return true
	})
	return out
}

// clone returns a copy-on-write clone of the items, in O(1), without
// counters: what a snapshot walks while writers go on.
func (x *index) clone() *index {
	return &index{tree: x.tree.Clone(), lay: x.lay}
}
