package presence

// The checking decoder of snapshots (the format is in snapshot.go): it
// reads a whole file and checks every checksum, length and time before the
// engine merges anything (merge.go).

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"
	"unsafe"
)

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
// only as far as the bytes already read: room grows by at most
// max(readChunk, bytes read so far) at once, so a short file that declares
// a long block costs a few KiB, and a real file's blocks one allocation each.
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

// decodeSnapshot reads and checks a whole snapshot.
func decodeSnapshot(r io.Reader) (*snapFile, int64, error) {
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
	v, flags := binary.LittleEndian.Uint16(hdr[8:]), binary.LittleEndian.Uint16(hdr[10:])
	if v < 1 || v > snapVersion || flags != 0 {
		return nil, sr.n, fmt.Errorf("%w: version %d, flags %#x; this build reads versions 1 to %d", ErrSnapshotVersion, v, flags, snapVersion)
	}

	f := &snapFile{rooms: v >= 2}
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
		rs := records{p: body[4:], left: int(count), rooms: f.rooms}
		for rs.left > 0 {
			if _, err := rs.next(); err != nil {
				return nil, sr.n, fmt.Errorf("%w in block %d", err, block)
			}
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
	p     []byte // the rest of the payload
	left  int    // records not yet decoded
	prev  int64  // the last decoded record's time: deltas are from it
	rooms bool   // records hold rooms
}

// next decodes the next record, checking every length and time; the strings
// alias the payload. Call it only while left > 0.
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
	// maxNano is heldNs, a held user's mark: no writer puts it in a file
	// (WriteTo writes a held user as seen now), and a file that does
	// would hold its user for ever.
	if rs.prev < minNano || rs.prev >= maxNano {
		return snapRecord{}, corrupt("time %d out of range", rs.prev)
	}
	rec := snapRecord{ns: rs.prev, id: id, meta: meta}
	if rs.rooms {
		if rec.rooms, err = rs.roomEntries(rec.ns); err != nil {
			return snapRecord{}, err
		}
	}
	rs.left--
	return rec, nil
}

// roomEntries checks the room entries of a record last seen at ns and
// returns their bytes, count first.
func (rs *records) roomEntries(ns int64) ([]byte, error) {
	start := rs.p
	k, err := rs.uvarint()
	if err != nil || k > uint64(len(rs.p))/3 { // an entry takes 3 bytes or more
		return nil, corrupt("bad room count")
	}
	for range k {
		name, err := rs.str(MaxIDLen, "room")
		if err != nil {
			return nil, err
		}
		if !ValidRoom(name) {
			return nil, corrupt("bad room name %q", name)
		}
		d, err := rs.uvarint()
		if err != nil || d > uint64(ns-minNano) {
			return nil, corrupt("bad time in room %q", name)
		}
	}
	return start[:len(start)-len(rs.p)], nil
}

func (rs *records) uvarint() (uint64, error) {
	v, k := binary.Uvarint(rs.p)
	if k <= 0 {
		return 0, corrupt("bad uvarint")
	}
	rs.p = rs.p[k:]
	return v, nil
}

func (rs *records) str(limit int, what string) (string, error) {
	l, err := rs.uvarint()
	if err != nil {
		return "", corrupt("bad %s length", what)
	}
	if l > uint64(limit) || l > uint64(len(rs.p)) {
		return "", corrupt("%s length %d (limit %d, %d bytes left)", what, l, limit, len(rs.p))
	}
	s := unsafe.String(unsafe.SliceData(rs.p), int(l))
	rs.p = rs.p[l:]
	return s, nil
}
