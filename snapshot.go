package presence

// # Snapshot format, version 1
//
// All integers are little-endian; varints are encoding/binary's.
//
//	header  8  magic "PRSNSNAP"
//	        2  version (1)
//	        2  flags (0; any other value is refused as an unknown version)
//	        4  CRC-32C (Castagnoli) of the 12 bytes above
//	block*  4  payload length n, 1 <= n <= 1 MiB
//	        4  record count c, 1 <= c <= n/4
//	        n  c records
//	        4  CRC-32C of the count and the payload
//	trailer 4  0xFFFFFFFF, which no block length can be
//	        8  total records in all blocks
//	        4  CRC-32C of every byte of the file before this field
//
// and nothing after it. A record is
//
//	varint   last-seen in Unix nanoseconds minus the previous record's in
//	         the block (the first record's minus zero), wrapping at 64 bits
//	uvarint  ID length, 1..512, then the ID's bytes
//	uvarint  meta length, 0..1024, then the meta's bytes
//
// Records are written shard by shard, each shard's in index order (by slot,
// then by the time users entered it), so the deltas are small: about 4
// bytes for users a few milliseconds apart. A reader merges the shards' runs
// by slot, which keeps its inserts at the newest end of its index, but reads
// any order correctly: it relies only on the checksums and limits, and every
// length is checked against the hard limits and the bytes that remain before
// anything is allocated for it.

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/maphash"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/google/btree"
	"github.com/puzpuzpuz/xsync/v3"
)

const (
	snapMagic      = "PRSNSNAP"
	snapVersion    = 1
	snapHeaderLen  = 16
	snapTrailerTag = 0xFFFFFFFF
	blockTarget    = 64 << 10 // a block is flushed once its payload reaches this
	maxBlock       = 1 << 20  // and a reader refuses anything longer
	minRecordLen   = 4        // delta, ID length, one ID byte, meta length
	readChunk      = 4 << 10  // payloads are read in chunks: allocation follows the bytes that exist
	defaultEvery   = time.Minute
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// WithSnapshotInterval sets how often an engine made by [Open] saves its
// snapshot (default one minute; d <= 0 selects the default). A save is
// skipped when nothing changed since the last one.
func WithSnapshotInterval(d time.Duration) Option {
	return func(c *config) { c.snapshotEvery = d }
}

// WithStartEmptyOnCorrupt makes [Open] start with an empty engine when the
// snapshot file is corrupt, instead of returning the error. Either way the
// corrupt file is first renamed to "<path>.corrupt-<unix seconds>", so that
// the next save does not destroy what an operator may want to inspect.
func WithStartEmptyOnCorrupt() Option {
	return func(c *config) { c.startEmptyOnCorrupt = true }
}

// WithSnapshotErrorHandler sets a function that [Open]'s background saver
// calls with each failed save (and with the corrupt-file error that
// WithStartEmptyOnCorrupt passed over). It must not block for long. Errors
// are counted in [Stats] either way; the engine keeps serving.
func WithSnapshotErrorHandler(f func(error)) Option {
	return func(c *config) { c.onSnapshotError = f }
}

// WriteTo writes a snapshot of the engine to w: it implements io.WriterTo.
//
// Writers are not stopped: WriteTo holds each shard's lock only to take a
// copy-on-write clone of its B-tree (O(1)), then encodes the clones while
// Touch goes on. Each shard's part is a consistent cut; a user's time may be
// newer than the cut, never older. Meta is read as the records are written.
// Users that retention has expired are left out, even those not yet
// removed: expiring a user forgets it, as Forget does.
func (e *Engine) WriteTo(w io.Writer) (int64, error) {
	clones := make([]*btree.BTreeG[item], len(e.shards))
	for i, s := range e.shards {
		s.mu.Lock()
		clones[i] = s.tree.Clone()
		s.mu.Unlock()
	}
	live := e.lay.bound(e.floorNow())
	sw := newSnapWriter(w)
	withMeta := e.metas.Size() > 0 // a map probe per user is worth skipping
	var batch [writeBatch]item
	var metas [writeBatch]string
	n := 0
	flush := func() {
		if withMeta {
			// The meta probes first, back to back: independent cache
			// misses, which the CPU overlaps (as merge's map probes).
			for i, it := range batch[:n] {
				metas[i], _ = e.metas.Load(it.id())
			}
		}
		for i, it := range batch[:n] {
			sw.record(it.ent.lastSeen.Load(), it.id(), metas[i])
		}
		n = 0
	}
	for _, t := range clones {
		t.AscendGreaterOrEqual(live, func(it item) bool {
			batch[n] = it
			if n++; n == writeBatch {
				flush()
			}
			return sw.err == nil
		})
		flush()
	}
	return sw.finish()
}

// writeBatch is how many users WriteTo probes the meta map for at once.
const writeBatch = 64

// snapWriter encodes records into blocks and keeps the file's running CRC.
type snapWriter struct {
	w     io.Writer
	n     int64
	err   error
	crc   uint32
	total uint64
	block []byte // 8 bytes of room for length and count, then the payload
	count uint32
	prev  int64
}

// newSnapWriter starts a snapshot on w with its header.
func newSnapWriter(w io.Writer) *snapWriter {
	sw := &snapWriter{w: w, block: make([]byte, 8, blockTarget+2048)}
	var hdr [snapHeaderLen]byte
	copy(hdr[:], snapMagic)
	binary.LittleEndian.PutUint16(hdr[8:], snapVersion)
	binary.LittleEndian.PutUint32(hdr[12:], crc32.Checksum(hdr[:12], castagnoli))
	sw.write(hdr[:])
	return sw
}

// finish writes the last block and the trailer, and returns the bytes
// written and the first error.
func (sw *snapWriter) finish() (int64, error) {
	sw.flush()
	var tr [16]byte
	binary.LittleEndian.PutUint32(tr[0:], snapTrailerTag)
	binary.LittleEndian.PutUint64(tr[4:], sw.total)
	sw.write(tr[:12])
	binary.LittleEndian.PutUint32(tr[12:], sw.crc)
	sw.write(tr[12:])
	return sw.n, sw.err
}

func (sw *snapWriter) write(b []byte) {
	if sw.err != nil {
		return
	}
	n, err := sw.w.Write(b)
	sw.n += int64(n)
	sw.err = err
	sw.crc = crc32.Update(sw.crc, castagnoli, b)
}

func (sw *snapWriter) record(ns int64, id, meta string) {
	b := binary.AppendVarint(sw.block, ns-sw.prev)
	b = binary.AppendUvarint(b, uint64(len(id)))
	b = append(b, id...)
	b = binary.AppendUvarint(b, uint64(len(meta)))
	sw.block = append(b, meta...)
	sw.prev = ns
	sw.count++
	if len(sw.block)-8 >= blockTarget {
		sw.flush()
	}
}

func (sw *snapWriter) flush() {
	if sw.count == 0 {
		return
	}
	binary.LittleEndian.PutUint32(sw.block[0:], uint32(len(sw.block)-8))
	binary.LittleEndian.PutUint32(sw.block[4:], sw.count)
	sw.block = binary.LittleEndian.AppendUint32(sw.block, crc32.Checksum(sw.block[4:], castagnoli))
	sw.write(sw.block)
	sw.total += uint64(sw.count)
	sw.block, sw.count, sw.prev = sw.block[:8], 0, 0
}

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
		n := max(int(min(f.total, maxExpected)), e.cfg.expected)
		e.users = xsync.NewMapOf[string, *entry](xsync.WithPresize(n))
	}
	e.merge(f)
	return n, nil
}

// snapFile is a snapshot whose checksums and records have been checked.
type snapFile struct {
	blocks []snapBlock
	total  uint64
	// runs start where a record's slot (at the reader's resolution) is
	// older than the one before it: a new shard of the writer, whose
	// records are in slot order, not in time order within a slot. A file
	// with more than maxRuns (from a writer with a coarser resolution, or
	// not written by WriteTo) is read as one run in file order.
	runs []run
	res  int64
}

type snapBlock struct {
	payload []byte
	count   int
}

// run is where a run of records in slot order starts, and how long it is.
type run struct {
	block int
	at    records // the block's decoder, positioned at the run's first record
	n     int
}

// maxRuns bounds the runs merged by slot: WriteTo writes one per shard.
const maxRuns = 1024

type snapRecord struct {
	ns       int64
	id, meta string // alias the block's payload; the engine copies what it keeps
}

func (e *Engine) merge(f *snapFile) {
	// Records retention has expired are passed over. The clock is read
	// once: read per record, it cost a merge of millions about a tenth of
	// its time.
	now := e.now().UnixNano()
	floor := e.floor(now)
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
			e.mergeOne(k.rec, ent, known, now) // evicts the least recently seen if full
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
		go func() {
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
						e.mergeOne(p.rec, p.ent, p.known, now)
					}
				}
				select {
				case free <- b:
				default:
				}
			}
		}()
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
	// A binary heap of the runs' cursors, keyed by the slot of their next
	// record.
	cur := make([]runCursor, 0, len(f.runs))
	for _, r := range f.runs {
		c := runCursor{rest: f.blocks[r.block+1:], at: r.at, n: r.n, res: f.res}
		if c.advance() {
			cur = append(cur, c)
		}
	}
	less := func(i, j int) bool { return cur[i].slot < cur[j].slot }
	down := func(i int) {
		for {
			m, l, r := i, 2*i+1, 2*i+2
			if l < len(cur) && less(l, m) {
				m = l
			}
			if r < len(cur) && less(r, m) {
				m = r
			}
			if m == i {
				return
			}
			cur[i], cur[m] = cur[m], cur[i]
			i = m
		}
	}
	for i := len(cur)/2 - 1; i >= 0; i-- {
		down(i)
	}
	for len(cur) > 0 {
		if cur[0].slot >= from {
			fn(cur[0].head)
		}
		if !cur[0].advance() {
			cur[0] = cur[len(cur)-1]
			cur = cur[:len(cur)-1]
		}
		down(0)
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
func (e *Engine) mergeOne(rec snapRecord, ent *entry, known bool, now int64) {
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

// snapReader reads a snapshot, keeping the running CRC of every byte read.
type snapReader struct {
	r   *bufio.Reader
	n   int64
	crc uint32
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorruptSnapshot}, args...)...)
}

// read appends exactly n more bytes to buf. A declared length is trusted
// only as far as the bytes already read: room is made for at most
// max(readChunk, bytes read so far) at once, doubling as bytes arrive, so a
// short file that declares a long block costs a few KiB, while the blocks of
// a real file, which follow megabytes already read, get one allocation each.
func (sr *snapReader) read(buf []byte, n int, what string) ([]byte, error) {
	want := len(buf) + n
	for len(buf) < want {
		if len(buf) == cap(buf) {
			room := max(readChunk, len(buf), int(min(sr.n, math.MaxInt32)))
			buf = slices.Grow(buf, min(want-len(buf), room))
		}
		start := len(buf)
		buf = buf[:min(want, cap(buf))]
		got, err := io.ReadFull(sr.r, buf[start:])
		sr.n += int64(got)
		sr.crc = crc32.Update(sr.crc, castagnoli, buf[start:start+got])
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, corrupt("truncated in %s at byte %d", what, sr.n)
			}
			return nil, fmt.Errorf("presence: reading snapshot: %w", err)
		}
	}
	return buf, nil
}

// decodeSnapshot reads and checks a whole snapshot, noting its runs in the
// order of slots of res nanoseconds.
func decodeSnapshot(r io.Reader, res int64) (*snapFile, int64, error) {
	sr := &snapReader{r: bufio.NewReaderSize(r, readChunk)}
	hdr, err := sr.read(nil, snapHeaderLen, "header")
	if err != nil {
		if sr.n == 0 && errors.Is(err, ErrCorruptSnapshot) {
			return nil, 0, corrupt("empty file")
		}
		return nil, sr.n, err
	}
	if string(hdr[:8]) != snapMagic {
		return nil, sr.n, corrupt("not a snapshot: bad magic %q", hdr[:8])
	}
	if crc32.Checksum(hdr[:12], castagnoli) != binary.LittleEndian.Uint32(hdr[12:]) {
		return nil, sr.n, corrupt("header checksum mismatch")
	}
	if v, f := binary.LittleEndian.Uint16(hdr[8:]), binary.LittleEndian.Uint16(hdr[10:]); v != snapVersion || f != 0 {
		return nil, sr.n, fmt.Errorf("%w: version %d, flags %#x; this build reads version %d", ErrSnapshotVersion, v, f, snapVersion)
	}

	f := &snapFile{res: res}
	last := int64(math.MinInt64) // the previous record's slot, across blocks
	for block := 0; ; block++ {
		head, err := sr.read(nil, 8, fmt.Sprintf("block %d header", block))
		if err != nil {
			return nil, sr.n, err
		}
		length := binary.LittleEndian.Uint32(head)
		if length == snapTrailerTag {
			// head holds the tag and the low half of the total.
			tr, err := sr.read(head, 4, "trailer")
			if err != nil {
				return nil, sr.n, err
			}
			want := sr.crc // of every byte before the CRC field
			if tr, err = sr.read(tr, 4, "trailer"); err != nil {
				return nil, sr.n, err
			}
			if declared := binary.LittleEndian.Uint64(tr[4:12]); declared != f.total {
				return nil, sr.n, corrupt("trailer counts %d records, blocks hold %d", declared, f.total)
			}
			if binary.LittleEndian.Uint32(tr[12:16]) != want {
				return nil, sr.n, corrupt("file checksum mismatch")
			}
			if _, err := sr.r.ReadByte(); err == nil {
				return nil, sr.n, corrupt("data after the trailer")
			} else if !errors.Is(err, io.EOF) {
				return nil, sr.n, fmt.Errorf("presence: reading snapshot: %w", err)
			}
			if len(f.runs) > maxRuns { // not written by WriteTo: one run, file order
				f.runs = []run{{at: records{p: f.blocks[0].payload, left: f.blocks[0].count}, n: int(f.total)}}
			}
			return f, sr.n, nil
		}
		count := binary.LittleEndian.Uint32(head[4:])
		if length == 0 || length > maxBlock {
			return nil, sr.n, corrupt("block %d declares %d bytes", block, length)
		}
		if count == 0 || count > length/minRecordLen {
			return nil, sr.n, corrupt("block %d declares %d records in %d bytes", block, count, length)
		}
		body, err := sr.read(head[4:8:8], int(length)+4, fmt.Sprintf("block %d", block))
		if err != nil {
			return nil, sr.n, err
		}
		sum := binary.LittleEndian.Uint32(body[len(body)-4:])
		body = body[:len(body)-4]
		if crc32.Checksum(body, castagnoli) != sum {
			return nil, sr.n, corrupt("block %d checksum mismatch", block)
		}
		rs := records{p: body[4:], left: int(count)}
		for rs.left > 0 {
			at := rs
			rec, err := rs.next()
			if err != nil {
				return nil, sr.n, fmt.Errorf("%w in block %d", err, block)
			}
			slot := slotOf(rec.ns, res)
			if len(f.runs) <= maxRuns && (slot < last || len(f.runs) == 0) {
				f.runs = append(f.runs, run{block: len(f.blocks), at: at})
			}
			if len(f.runs) <= maxRuns {
				f.runs[len(f.runs)-1].n++
			}
			last = slot
		}
		if len(rs.p) != 0 {
			return nil, sr.n, corrupt("%d bytes after the last record in block %d", len(rs.p), block)
		}
		f.blocks = append(f.blocks, snapBlock{payload: body[4:], count: int(count)})
		f.total += uint64(count)
	}
}

// records decodes a block's records one at a time. A copy is a saved
// position.
type records struct {
	p    []byte // the rest of the payload
	left int    // records not yet decoded
	prev int64  // the last decoded record's time: deltas are from it
}

// next decodes the next record; the strings alias the payload. It checks
// every length against the limits and the bytes left, and every time
// against the accepted range. Call it only while left > 0.
func (rs *records) next() (snapRecord, error) {
	d, k := binary.Varint(rs.p)
	if k <= 0 {
		return snapRecord{}, corrupt("bad time")
	}
	rs.p = rs.p[k:]
	id, err := rs.str(MaxIDLen, "ID")
	if err != nil {
		return snapRecord{}, err
	}
	if id == "" {
		return snapRecord{}, corrupt("empty ID")
	}
	meta, err := rs.str(MaxMetaLen, "meta")
	if err != nil {
		return snapRecord{}, err
	}
	rs.prev += d // wraps as the writer's subtraction did
	if rs.prev < minNano || rs.prev > maxNano {
		return snapRecord{}, corrupt("time %d out of range", rs.prev)
	}
	rs.left--
	return snapRecord{ns: rs.prev, id: id, meta: meta}, nil
}

func (rs *records) str(limit int, what string) (string, error) {
	l, k := binary.Uvarint(rs.p)
	if k <= 0 {
		return "", corrupt("bad %s length", what)
	}
	rs.p = rs.p[k:]
	if l > uint64(limit) || l > uint64(len(rs.p)) {
		return "", corrupt("%s length %d (limit %d, %d bytes left)", what, l, limit, len(rs.p))
	}
	s := unsafe.String(unsafe.SliceData(rs.p), int(l))
	rs.p = rs.p[l:]
	return s, nil
}

// SaveFile writes a snapshot to path atomically: to a new temporary file in
// the same directory (mode 0600 whatever the umask), synced, then renamed over
// path, and the directory synced. On any error the temporary file is removed
// and the previous file at path is left as it was.
func (e *Engine) SaveFile(path string) (err error) {
	defer func() {
		if err != nil {
			e.snapErrors.Add(1)
		} else {
			e.snapSaves.Add(1)
		}
	}()
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, tmp, err := createTemp(dir, base)
	if err != nil {
		return fmt.Errorf("presence: save %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return fmt.Errorf("presence: save %s: %w", path, err)
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	if _, err = e.WriteTo(bw); err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		return fmt.Errorf("presence: save %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("presence: save %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("presence: save %s: %w", path, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		derr = d.Sync()
		d.Close()
		if derr != nil {
			return fmt.Errorf("presence: save %s: sync directory: %w", path, derr)
		}
	}
	return nil
}

// tempPrefix names a save's temporary file: "<name>.tmp-<random>".
func tempPrefix(base string) string { return base + ".tmp-" }

func createTemp(dir, base string) (*os.File, string, error) {
	for range 100 {
		name := filepath.Join(dir, fmt.Sprintf("%s%d", tempPrefix(base), time.Now().UnixNano()))
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, name, err
	}
	return nil, "", errors.New("cannot create a temporary file")
}

// LoadFile merges the snapshot at path into the engine, as ReadFrom.
func (e *Engine) LoadFile(path string) error { return e.loadFile(path, false) }

func (e *Engine) loadFile(path string, unpublished bool) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("presence: load: %w", err)
	}
	defer f.Close()
	if _, err := e.readFrom(f, unpublished); err != nil {
		return fmt.Errorf("presence: load %s: %w", path, err)
	}
	return nil
}

// Open returns an engine configured by opts that persists itself at path. It
// removes temporary files left by an interrupted save, loads path if it
// exists (a missing file is a fresh start), then saves every
// [WithSnapshotInterval] in the background, skipping saves when nothing
// changed. [Engine.Close] stops the saver and writes a final snapshot.
//
// A corrupt file is renamed to "<path>.corrupt-<unix seconds>" and Open
// returns the error wrapping [ErrCorruptSnapshot], unless
// [WithStartEmptyOnCorrupt] was given. A file of an unknown version is left
// in place and Open returns the error wrapping [ErrSnapshotVersion]: saving
// over it would destroy data a newer build wrote.
func Open(path string, opts ...Option) (*Engine, error) {
	e := New(opts...)
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if stale, err := filepath.Glob(filepath.Join(dir, globEscape(tempPrefix(base))+"*")); err == nil {
		for _, name := range stale {
			os.Remove(name)
		}
	}
	err := e.loadFile(path, true)
	switch {
	case err == nil, errors.Is(err, fs.ErrNotExist):
	case errors.Is(err, ErrCorruptSnapshot):
		aside := fmt.Sprintf("%s.corrupt-%d", path, e.now().Unix())
		if rerr := os.Rename(path, aside); rerr != nil {
			return nil, fmt.Errorf("%w (and moving it aside failed: %v)", err, rerr)
		}
		err = fmt.Errorf("%w; moved to %s", err, aside)
		if !e.cfg.startEmptyOnCorrupt {
			return nil, err
		}
		e.reportSnapshotError(err)
	default:
		return nil, err
	}
	every := e.cfg.snapshotEvery
	if every <= 0 {
		every = defaultEvery
	}
	e.saver = &saver{path: path, stop: make(chan struct{}), done: make(chan struct{})}
	e.dirty.Store(false)
	go e.saveLoop(every)
	return e, nil
}

func globEscape(s string) string {
	r := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `\`, `\\`)
	return r.Replace(s)
}

// saver is the background work of an engine made by Open.
type saver struct {
	path      string
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (e *Engine) saveLoop(every time.Duration) {
	defer close(e.saver.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-e.saver.stop:
			return
		case <-t.C:
			e.saveIfDirty()
		}
	}
}

// saveIfDirty saves when anything changed since the last save. The flag is
// cleared before the save starts, so a change made during it is saved next
// time.
func (e *Engine) saveIfDirty() error {
	if !e.dirty.Swap(false) {
		return nil
	}
	err := e.SaveFile(e.saver.path)
	if err != nil {
		e.dirty.Store(true)
		e.reportSnapshotError(err)
	}
	return err
}

func (e *Engine) reportSnapshotError(err error) {
	if f := e.cfg.onSnapshotError; f != nil {
		f(err)
	}
}
