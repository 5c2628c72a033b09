package presence

import (
	"cmp"
	"hash/maphash"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/puzpuzpuz/xsync/v3"
)

// ReadFrom merges a snapshot from r into the engine: it implements
// io.ReaderFrom. For each user the newer last-seen time wins, with its meta,
// so loading snapshots in any order, or into a non-empty engine, converges to
// the same state. Users the engine's retention has expired are skipped, and
// WithMaxUsers keeps the most recently seen (users of one time in the
// index's own order, so that under a cap, too, the order files are read in
// does not matter).
//
// The whole snapshot is read and checked before anything is merged: on any
// error, wrapping [ErrCorruptSnapshot] or [ErrSnapshotVersion], the engine
// is unchanged. Merging runs on up to GOMAXPROCS goroutines, each taking a
// disjoint set of shards, fed by the calling goroutine, which decodes the
// records once.
func (e *Engine) ReadFrom(r io.Reader) (int64, error) {
	return e.readFrom(r, false)
}

// readFrom is ReadFrom; unpublished says no other goroutine can see e yet
// (Open), so its maps may be replaced by ones sized for the snapshot.
func (e *Engine) readFrom(r io.Reader, unpublished bool) (int64, error) {
	f, n, err := decodeSnapshot(r, e.lay.res)
	if err != nil {
		return n, err
	}
	if unpublished && e.held() == 0 {
		// Growing a map to millions of users rehashes it many times over.
		n := max(int(min(f.total, maxExpected)), e.expected)
		e.users = xsync.NewMapOf[string, *entry](xsync.WithPresize(n))
	}
	e.merge(f)
	return n, nil
}

func (e *Engine) merge(f *snapFile) {
	// Records retention has expired are passed over. The clock is read
	// once, not once per record.
	now := e.clock(e.now().UnixNano())
	floor := e.floor(&now)
	if e.maxUsers > 0 && uint64(e.held())+f.total > uint64(e.maxUsers) {
		// The file may not fit under the cap: newest first, in the index's
		// own order, so that the cap keeps the newest users rather than
		// evicting them for older ones that come later, and so that which
		// users of one time fill the last places does not depend on the
		// order files are read in. (One goroutine, and a copy of every
		// record: a file that fits takes the parallel path below, where
		// the cap still holds, as for any insert.)
		type keyed struct {
			key int64 // as the record's user would be filed
			rec snapRecord
		}
		recs := make([]keyed, 0, f.total)
		f.inSlotOrder(floor, func(r snapRecord) { recs = append(recs, keyed{e.lay.key(r.ns, r.id), r}) })
		slices.SortFunc(recs, func(a, b keyed) int {
			return cmp.Or(cmp.Compare(b.key, a.key), strings.Compare(b.rec.id, a.rec.id))
		})
		for _, k := range recs {
			ent, known := e.users.Load(k.rec.id)
			if !known && e.n.Load() >= e.maxUsers {
				if _, first, ok := e.oldest(); ok && (first.key > k.key || first.key == k.key && first.id() >= k.rec.id) {
					break // full of users newer than every record left
				}
			}
			e.mergeOne(k.rec, ent, known, &now) // evicts the least recently seen if full
		}
		return
	}
	// One goroutine (this one) walks the records in slot order and hands
	// them, a batch at a time, to the worker that owns their shard, so
	// workers never wait on each other's locks, and the file is decoded
	// once, not once per worker.
	workers := uint64(min(runtime.GOMAXPROCS(0), len(e.shards)))
	queues := make([]chan *recBatch, workers)
	free := make(chan *recBatch, 4*workers) // enough for every batch in flight
	var wg sync.WaitGroup
	for w := range workers {
		queues[w] = make(chan *recBatch, 2)
		wg.Add(1)
		go func(now reading) {
			defer wg.Done()
			var batch [mergeBatch]pending
			for b := range queues[w] {
				for recs := b.recs[:b.n]; len(recs) > 0; {
					n := min(len(recs), mergeBatch)
					for i, r := range recs[:n] {
						batch[i].rec = r
					}
					recs = recs[n:]
					// The map probes first, back to back: they are
					// independent cache misses, which the CPU overlaps,
					// where one probe per merge would wait for each in turn.
					for i := range batch[:n] {
						batch[i].ent, batch[i].known = e.users.Load(batch[i].rec.id)
					}
					for _, p := range batch[:n] {
						e.mergeOne(p.rec, p.ent, p.known, &now)
					}
				}
				select {
				case free <- b:
				default:
				}
			}
		}(now)
	}
	filling := make([]*recBatch, workers)
	f.inSlotOrder(floor, func(r snapRecord) {
		w := maphash.String(e.seed, r.id) & e.mask % workers
		b := filling[w]
		if b == nil {
			select {
			case b = <-free:
				b.n = 0
			default:
				b = new(recBatch)
			}
			filling[w] = b
		}
		b.recs[b.n] = r
		if b.n++; b.n == len(b.recs) {
			queues[w] <- b
			filling[w] = nil
		}
	})
	for w, b := range filling {
		if b != nil {
			queues[w] <- b
		}
		close(queues[w])
	}
	wg.Wait()
}

// recBatch is records handed to a merge worker at once, so that channel
// operations are rare.
type recBatch struct {
	n    int
	recs [1024]snapRecord
}

// mergeBatch is how many records a merge worker probes the map for at once.
const mergeBatch = 16

// pending is a record in a merge worker's batch, with what the map held
// for its ID.
type pending struct {
	rec   snapRecord
	ent   *entry
	known bool
}

// inSlotOrder calls fn with every record of f in slot from or newer, oldest
// slot first, merging its runs (in file order if f had too many to note).
// In slot order, each record lands at the newest end of its shard's B-tree,
// whose nodes stay in cache; in file order, one run per writer's shard, a
// record would land anywhere in a tree of millions, a few cache misses per
// level.
func (f *snapFile) inSlotOrder(from int64, fn func(snapRecord)) {
	h := mergeHeap[runCursor]{
		s:    make([]runCursor, 0, len(f.runs)),
		less: func(a, b *runCursor) bool { return a.slot < b.slot },
	}
	for _, r := range f.runs {
		c := runCursor{rest: f.blocks[r.block+1:], at: r.at, n: r.n, res: f.res}
		if c.advance() {
			h.s = append(h.s, c)
		}
	}
	h.init()
	for len(h.s) > 0 {
		if h.s[0].slot >= from {
			fn(h.s[0].head)
		}
		if h.s[0].advance() {
			h.fix()
		} else {
			h.pop()
		}
	}
}

// runCursor walks one run of a checked file.
type runCursor struct {
	rest []snapBlock // the blocks after the current one
	at   records
	n    int // records left in the run, head excluded
	head snapRecord
	slot int64 // head's
	res  int64
}

// advance moves head to the run's next record; false at the run's end.
func (c *runCursor) advance() bool {
	if c.n == 0 {
		return false
	}
	if c.at.left == 0 {
		c.at = records{p: c.rest[0].payload, left: c.rest[0].count}
		c.rest = c.rest[1:]
	}
	c.head, _ = c.at.next() // checked by decodeSnapshot
	c.slot = slotOf(c.head.ns, c.res)
	c.n--
	return true
}

// mergeOne merges one record: the newer time wins, and its meta with it.
// ent and known are what the map held for the ID a moment ago: a user added
// since is found by insert, and one removed since is re-inserted by raise.
func (e *Engine) mergeOne(rec snapRecord, ent *entry, known bool, now *reading) {
	var old int64
	if known {
		old = ent.lastSeen.Load()
		e.raise(ent, rec.id, rec.ns, now)
	} else {
		old, known = e.insert(rec.id, rec.ns, now)
	}
	e.markDirty()
	switch {
	case !known:
		if rec.meta != "" {
			e.setMeta(rec.id, rec.meta, now)
		}
	case rec.ns > old:
		e.setMeta(rec.id, rec.meta, now) // the newer record's meta wins, even ""
	case rec.ns == old:
		if cur, _ := e.metas.Load(rec.id); rec.meta > cur {
			e.setMeta(rec.id, rec.meta, now) // a tie: the larger meta, in any order
		}
	}
}
