package presence

import (
	"hash/crc32"
	"math"
	"math/bits"
	"time"
	"unsafe"
)

// item is one user's place in a shard's index. The index orders by key, then
// by ID: the key packs the slot (high bits), the time at which the user was
// filed under it (its first touch in the slot, in steps of 1/512 of a slot
// at the default resolution), a few bits of a hash of the ID, and the ID's
// length.
//
// Filing in time order puts every new item near the newest end of the tree,
// whose nodes stay in cache, even when hundreds of thousands of users enter
// one slot at once; ordered only by a hash of the ID, each insert would land
// anywhere in the tree, a few cache misses per level. The hash settles ties
// within a step without reading IDs, which are in other cache lines (many
// users share one step when callers pass times from a coarse clock). The ID
// breaks the remaining ties and gives paging a total order (a B-tree keeps
// no two equal items).
//
// An item is 16 bytes: the ID is read from the entry, which carries its
// bytes (newEntry). Index nodes are about half full when users arrive in
// time order, so each byte of an item costs about two per user;
// TestItemLayout pins the size.
type item struct {
	key int64  // slot | step | tie | len(id), high to low; see layout
	ent *entry // the user's entry and ID; nil in bounds
}

// idLenBits holds MaxIDLen.
const idLenBits = 10

// layout is how an engine packs item keys, which depends on its resolution:
// the slot needs enough bits for any accepted time, and the filing step and
// the tie hash share what is left of 63, the tie getting the odd bit (4 and
// 4 at 1ms, 9 and 9 at 1s, 17 and 18 at 24h: steps of 62us, 2ms and 0.7s).
type layout struct {
	res               int64
	shift             uint // step bits + tie bits + idLenBits
	stepBits, tieBits uint
	minSlot, maxSlot  int64
}

func newLayout(res int64) layout {
	slotBits := uint(bits.Len64(uint64(maxNano/res))) + 1 // with the sign
	left := 63 - idLenBits - slotBits
	tie := min((left+1)/2, 32)
	step := left - tie
	shift := step + tie + idLenBits
	return layout{res: res, shift: shift, stepBits: step, tieBits: tie, minSlot: -1 << (62 - shift), maxSlot: 1<<(62-shift) - 1}
}

// key is the key of an item for id filed at ns. The tie is a CRC-32C of the
// ID: stable across processes, like the rest of the key.
func (l layout) key(ns int64, id string) int64 {
	slot := slotOf(ns, l.res)
	off := uint64(ns - slot*l.res) // [0, res)
	hi, lo := bits.Mul64(off, 1<<l.stepBits)
	step, _ := bits.Div64(hi, lo, uint64(l.res)) // hi < res: no overflow
	tie := crc32.Checksum(unsafe.Slice(unsafe.StringData(id), len(id)), castagnoli) >> (32 - l.tieBits)
	return slot<<l.shift | int64(step)<<(l.tieBits+idLenBits) | int64(tie)<<idLenBits | int64(len(id))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// bound is a search key before every item of slot. Slots beyond the
// representable range (only bounds for "everything" ask for them) are
// clamped.
func (l layout) bound(slot int64) item {
	return item{key: min(max(slot, l.minSlot), l.maxSlot) << l.shift}
}

func (l layout) slot(it item) int64 { return it.key >> l.shift }

// end is the exclusive end, in Unix nanoseconds, of the slot of a key (it
// may wrap for the last slot of all, which only sends touches there down
// the slow path).
func (l layout) end(key int64) int64 { return (key>>l.shift + 1) * l.res }

func (it item) id() string {
	n := int(it.key & (1<<idLenBits - 1))
	if n == 0 {
		return ""
	}
	return it.ent.id(n)
}

func itemLess(a, b item) bool {
	if a.key != b.key {
		return a.key < b.key
	}
	return a.id() < b.id()
}

// slotOf returns the index slot of a Unix-nanosecond time: floor(ns / res).
func slotOf(ns, res int64) int64 {
	s := ns / res
	if ns%res < 0 {
		s--
	}
	return s
}

// Times the engine accepts, in Unix nanoseconds: UnixNano is undefined
// outside about 1678..2262, and a margin keeps slot arithmetic from
// overflowing at any resolution.
const (
	minNano = (math.MinInt64/int64(time.Second) + 1) * int64(time.Second)
	maxNano = (math.MaxInt64/int64(time.Second) - 1) * int64(time.Second)
)

// unixNano converts t, reporting false for the zero time and for times
// whose second is not strictly between those of minNano and maxNano: every
// time it accepts lies in [minNano, maxNano].
func unixNano(t time.Time) (int64, bool) {
	if t.IsZero() {
		return 0, false
	}
	// Seconds rather than a round trip, which would cost the hot path a call.
	if sec := t.Unix(); sec <= minNano/int64(time.Second) || sec >= maxNano/int64(time.Second) {
		return 0, false
	}
	return t.UnixNano(), true
}

// unread stands for a clock not read yet (see reading).
const unread = math.MaxInt64

// reading is an operation's view of the engine's clock, read at most once
// and only when needed: Touch passes the time it read, TouchAt and the other
// writes pass it unread, and the paths that need now (retention, a move of
// the counters' head) read it on first use, so fast paths never call the
// clock. It is the engine's one clock mechanism.
type reading struct {
	clock func() time.Time
	at    int64 // Unix ns, or unread
}

// ns returns the reading, reading the clock first if nothing has.
func (r *reading) ns() int64 {
	if r.at == unread {
		r.at = r.clock().UnixNano()
	}
	return r.at
}
