package presence

import (
	"fmt"
	"io"
	"time"
	"unsafe"
)

// ItemSize is the size of one index item; TestItemLayout pins it.
const ItemSize = unsafe.Sizeof(item{})

// CompareInSlot orders two IDs filed in one slot as the engine's index
// does, for the reference model: -1, 0 or +1.
func CompareInSlot(e *Engine, a, b string) int {
	ia, ib := e.lay.item(0, a, newEntry(a)), e.lay.item(0, b, newEntry(b))
	switch {
	case itemLess(ia, ib):
		return -1
	case itemLess(ib, ia):
		return 1
	}
	return 0
}

// CheckInvariants checks, on a quiet engine, that the map, the index and the
// counters agree: every user is in the map and in its shard's tree once,
// filed under the slot its entry says, and the counters and the user count
// add up.
func CheckInvariants(e *Engine) error {
	inTrees := 0
	for i, s := range e.shards {
		s.mu.RLock()
		var err error
		s.tree.Ascend(func(it item) bool {
			id := it.id()
			if e.shardOf(id) != s {
				err = fmt.Errorf("%q is in shard %d, not its own", id, i)
			} else if ent, ok := e.users.Load(id); !ok || ent != it.ent {
				err = fmt.Errorf("%q is indexed but not mapped to its entry", id)
			} else if end := it.ent.slotEnd.Load(); end != (e.lay.slot(it)+1)*e.res {
				err = fmt.Errorf("%q is filed at slot %d but its entry says end %d", id, e.lay.slot(it), end)
			} else if want := slotOf(it.ent.lastSeen.Load(), e.res); want != e.lay.slot(it) {
				err = fmt.Errorf("%q is filed at slot %d, its last-seen is in slot %d", id, e.lay.slot(it), want)
			}
			return err == nil
		})
		n := s.tree.Len()
		if c := s.counts.old + s.counts.inRing; err == nil && c != n {
			err = fmt.Errorf("shard %d counts %d users, its tree holds %d", i, c, n)
		}
		s.mu.RUnlock()
		if err != nil {
			return err
		}
		inTrees += n
	}
	if m := e.users.Size(); m != inTrees || int64(m) != e.n.Load() {
		return fmt.Errorf("map holds %d users, trees %d, count %d", m, inTrees, e.n.Load())
	}
	return nil
}

// EncodeSnapshot writes a snapshot of recs in the given order, as WriteTo
// writes its records, so that tests can make files WriteTo would not.
func EncodeSnapshot(w io.Writer, recs []Activity) (int64, error) {
	sw := newSnapWriter(w)
	for _, a := range recs {
		sw.record(a.LastSeen.UnixNano(), a.ID, a.Meta)
	}
	return sw.finish()
}

// SnapshotMergeOrder decodes a snapshot and returns the times of its
// records in the order a merge into an engine of resolution res visits
// them, and the runs it found.
func SnapshotMergeOrder(r io.Reader, res time.Duration) (times []int64, runs int, err error) {
	f, _, err := decodeSnapshot(r, int64(res))
	if err != nil {
		return nil, 0, err
	}
	f.inSlotOrder(func(rec snapRecord) { times = append(times, rec.ns) })
	return times, len(f.runs), nil
}
