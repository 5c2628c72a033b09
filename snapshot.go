package presence

// Snapshots: the byte format and its writer. decode.go is its checking
// decoder, merge.go merges a decoded snapshot into an engine, and file.go
// and saver.go keep one on disk.
//
// # Snapshot format, version 2
//
// All integers are little-endian; varints are encoding/binary's.
//
//	header  8  magic "PRSNSNAP"
//	        2  version (2; a reader also reads 1)
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
//	uvarint  how many rooms the user is in (version 2 only; 0 in version
//	         1), then for each:
//	  uvarint  room name length, 1..512, then the name's bytes (valid
//	           UTF-8, no NUL)
//	  uvarint  the user's last-seen minus its last-seen in the room
//
// Records are written newest first in index order, so deltas are small
// (about 4 bytes for users milliseconds apart). A user in many rooms takes
// several records of the same time, each with at most 64 KiB of room
// entries, the first with the meta and the rest with none, so that no
// record nears the block limit. A reader reads any order correctly and
// merges records of one ID as it merges snapshots; every length is checked
// against the limits and the bytes that remain before anything is
// allocated.

import (
	"encoding/binary"
	"hash/crc32"
	"io"
	"time"
)

const (
	snapMagic      = "PRSNSNAP"
	snapVersion    = 2
	snapHeaderLen  = 16
	snapTrailerTag = 0xFFFFFFFF
	blockTarget    = 64 << 10 // a block is flushed once its payload reaches this
	maxBlock       = 1 << 20  // and a reader refuses anything longer
	minRecordLen   = 4        // delta, ID length, one ID byte, meta length
	readChunk      = 4 << 10  // payloads are read in chunks: allocation follows the bytes that exist
)

// WriteTo writes a snapshot of the engine to w: it implements io.WriterTo.
//
// Writers are not stopped: WriteTo holds each shard's lock only to clone its
// B-tree (O(1), copy-on-write), then encodes the clones while Touch goes on.
// Each shard's part is a consistent cut; a user's time may be newer than the
// cut, never older. Meta is read as records are written. Expired users are
// left out.
func (e *Engine) WriteTo(w io.Writer) (int64, error) {
	clones := make([]*index, len(e.shards))
	for i, s := range e.shards {
		clones[i] = s.clone()
	}
	sw := newSnapWriter(w)
	withMeta := e.metas.Size() > 0 // a map probe per user is worth skipping
	withRooms := e.joined.Load()
	metas := make([]string, writeBatch)
	var rooms []roomTime
	sc := scratchPool.Get().(*scratch)
	defer sc.release()
	// Newest first across shards, as a page walk: a reader files every
	// record at the oldest end of its B-tree, whose nodes stay in cache.
	now := e.clock(unread)
	win := window{from: e.from(time.Time{}), limit: writeBatch}
	for sw.err == nil {
		sc.merged = sc.merged[:0]
		walk(sc, clones, win)
		if withMeta {
			// The probes back to back: the CPU overlaps their misses.
			for i, it := range sc.merged {
				metas[i], _ = e.metas.Load(it.id())
			}
		}
		for i, it := range sc.merged {
			ns := e.seen(it.ent.lastSeen.Load(), &now)
			if withRooms {
				rooms = e.roomTimes(it.id(), rooms[:0], &now)
				for _, r := range rooms {
					ns = max(ns, r.ns) // a TouchIn between the two loads
				}
			}
			sw.record(ns, it.id(), metas[i], rooms)
		}
		if len(sc.merged) < writeBatch {
			break
		}
		win.after, win.has = sc.merged[writeBatch-1], true
	}
	return sw.finish()
}

// writeBatch is how many users WriteTo walks at once.
const writeBatch = 1024

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

// maxRecordRooms bounds the bytes of room entries in one record. A user in
// more rooms is written as several records of the same time, the first
// with the meta, which the reader merges as it merges any two records of
// one user: so no record the writer makes nears the reader's maxBlock,
// whatever WithMaxRoomsPerUser allows.
const maxRecordRooms = 64 << 10

// record encodes a user, in several records if its rooms need; rooms'
// times are not after ns.
func (sw *snapWriter) record(ns int64, id, meta string, rooms []roomTime) {
	for {
		n, size := 0, 0
		for n < len(rooms) && size < maxRecordRooms {
			size += len(rooms[n].name) + 2*binary.MaxVarintLen64
			n++
		}
		sw.one(ns, id, meta, rooms[:n])
		if rooms = rooms[n:]; len(rooms) == 0 {
			return
		}
		meta = ""
	}
}

// one encodes one record.
func (sw *snapWriter) one(ns int64, id, meta string, rooms []roomTime) {
	b := binary.AppendVarint(sw.block, ns-sw.prev)
	b = binary.AppendUvarint(b, uint64(len(id)))
	b = append(b, id...)
	b = binary.AppendUvarint(b, uint64(len(meta)))
	b = append(b, meta...)
	b = binary.AppendUvarint(b, uint64(len(rooms)))
	for _, r := range rooms {
		b = binary.AppendUvarint(b, uint64(len(r.name)))
		b = append(b, r.name...)
		b = binary.AppendUvarint(b, uint64(ns-r.ns))
	}
	sw.block = b
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

// snapFile is a snapshot whose checksums and records have been checked.
type snapFile struct {
	blocks []snapBlock
	total  uint64
	rooms  bool // records hold rooms (version 2)
}

type snapBlock struct {
	payload []byte
	count   int
}

type snapRecord struct {
	ns       int64
	id, meta string // alias the block's payload; the engine copies what it keeps
	rooms    []byte // the record's checked room entries, count first; nil in version 1
}

// roomTime is a membership as a snapshot holds it.
type roomTime struct {
	name string
	ns   int64
}

// eachRoom calls fn with each membership of a checked record.
func (rec snapRecord) eachRoom(fn func(roomTime)) {
	if rec.rooms == nil {
		return
	}
	rs := records{p: rec.rooms}
	k, _ := rs.uvarint()
	for range k {
		name, _ := rs.str(MaxIDLen, "room")
		d, _ := rs.uvarint()
		fn(roomTime{name, rec.ns - int64(d)})
	}
}
