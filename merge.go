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
// so loading snapshots in any order, or into a non-empty engine, converges
// to the same state. Expired users are skipped; WithMaxUsers keeps the most
// recently seen (ties in the index's order, so order does not matter).
//
// The whole snapshot is read and checked before anything is merged: on any
// error, wrapping [ErrCorruptSnapshot] or [ErrSnapshotVersion], the engine
// is unchanged. Merging runs on up to GOMAXPROCS goroutines, each owning
// a disjoint set of shards, fed by the calling goroutine.
func (e *Engine) ReadFrom(r io.Reader) (int64, error) {
	return e.readFrom(r, false)
}

// readFrom is ReadFrom; unpublished says no other goroutine can see e yet
// (Open), so its maps may be replaced by ones sized for the snapshot.
func (e *Engine) readFrom(r io.Reader, unpublished bool) (int64, error) {
	f, n, err := decodeSnapshot(r)
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
	now := e.clock(e.now().UnixNano()) // once, not per record
	floor := e.floor(&now)
	if e.maxUsers > 0 && uint64(e.held())+f.total > uint64(e.maxUsers) {
		// The file may not fit: newest first in the index's order, so that
		// the cap keeps the newest users, whatever order files come in.
		// (One goroutine and a copy of every record; a file that fits takes
		// the parallel path, where the cap holds as for any insert.)
		type keyed struct {
			key int64 // as the record's user would be filed
			rec snapRecord
		}
		recs := make([]keyed, 0, f.total)
		f.each(floor, e.lay.res, func(r snapRecord) { recs = append(recs, keyed{e.lay.key(r.ns, r.id), r}) })
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
	// This goroutine walks the records and hands them in
	// batches to the worker owning their shard, so workers never wait on
	// each other's locks and the file is decoded once.
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
					// The probes back to back: the CPU overlaps their misses.
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
	f.each(floor, e.lay.res, func(r snapRecord) {
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

// recBatch is records handed to a merge worker at once: channel operations are rare.
type recBatch struct {
	n    int
	recs [1024]snapRecord
}

// mergeBatch is how many records a merge worker probes the map for at once.
const mergeBatch = 16

// pending is a record in a merge worker's batch, with what the map held.
type pending struct {
	rec   snapRecord
	ent   *entry
	known bool
}

// each calls fn with every record of f filed at slot from or newer (at res),
// in file order.
func (f *snapFile) each(from, res int64, fn func(snapRecord)) {
	for _, b := range f.blocks {
		rs := records{p: b.payload, left: b.count, rooms: f.rooms}
		for rs.left > 0 {
			rec, _ := rs.next() // checked by decodeSnapshot
			if slotOf(rec.ns, res) >= from {
				fn(rec)
			}
		}
	}
}

// mergeOne merges one record: the newer time wins, with its meta, and in
// each room the newer time in the room. ent and known are what the map held
// a moment ago: insert finds a user added since, and raise re-inserts one
// removed since.
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
	rec.eachRoom(func(r roomTime) {
		if e.alive(r.ns, now) {
			e.touchIn(r.name, rec.id, r.ns, now)
		}
	})
}
