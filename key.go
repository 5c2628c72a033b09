package presence

import (
	"hash/crc32"
	"math"
	"math/bits"
	"time"
	"unsafe"
)

// item is one user's place in a shard's index, ordered by key, then by ID.
// The key packs the slot (high bits), the time the user entered it (in steps
// of 1/512 of a slot at the default resolution), a few bits of a hash of the
// ID, and the ID's length.
//
// Filing in time order keeps inserts at the newest end of the tree, in
// cache, even when a whole crowd enters one slot; the hash settles ties
// within a step without reading IDs from other cache lines; the ID breaks
// the rest and gives paging a total order. An item is 16 bytes (the ID is
// read from the entry), and each of its bytes costs about two per user in
// half-full nodes; TestItemLayout pins the size.
type item struct {
	key int64  // slot | step | tie | len(id), high to low; see layout
	ent *entry // the user's entry and ID; nil in bounds
}

// idLenBits holds MaxIDLen.
const idLenBits = 10

// layout is how an engine of a resolution packs keys: the slot takes enough
// bits for any accepted time, and the step and the tie share what is left of
// 63 (steps of 62us at 1ms, 2ms at 1s, 0.7s at 24h).
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
// ID, so keys are stable across processes.
func (l layout) key(ns int64, id string) int64 {
	slot := slotOf(ns, l.res)
	off := uint64(ns - slot*l.res) // [0, res)
	hi, lo := bits.Mul64(off, 1<<l.stepBits)
	step, _ := bits.Div64(hi, lo, uint64(l.res)) // hi < res: no overflow
	tie := crc32.Checksum(unsafe.Slice(unsafe.StringData(id), len(id)), castagnoli) >> (32 - l.tieBits)
	return slot<<l.shift | int64(step)<<(l.tieBits+idLenBits) | int64(tie)<<idLenBits | int64(len(id))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// bound is a search key before every item of slot, clamped to the range.
func (l layout) bound(slot int64) item {
	return item{key: min(max(slot, l.minSlot), l.maxSlot) << l.shift}
}

func (l layout) slot(it item) int64 { return it.key >> l.shift }

// end is the exclusive end, in Unix ns, of a key's slot (it may wrap for the
// last slot of all, which only sends touches there down the slow path).
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

// Times the engine accepts, in Unix ns: UnixNano is undefined outside about
// 1678..2262, and a margin keeps slot arithmetic from overflowing.
const (
	minNano = (math.MinInt64/int64(time.Second) + 1) * int64(time.Second)
	maxNano = (math.MaxInt64/int64(time.Second) - 1) * int64(time.Second)
)

// unixNano converts t, reporting false for the zero time and for times
// outside [minNano, maxNano] (checked by second, cheaper than a round trip).
func unixNano(t time.Time) (int64, bool) {
	if t.IsZero() {
		return 0, false
	}
	if sec := t.Unix(); sec <= minNano/int64(time.Second) || sec >= maxNano/int64(time.Second) {
		return 0, false
	}
	return t.UnixNano(), true
}

// unread stands for a clock not read yet (see reading).
const unread = math.MaxInt64

// reading is an operation's view of the engine's clock, read at most once,
// on first use: Touch passes the time it read, other writes pass it unread,
// and only the paths that need now (retention, the counters' head) read it.
type reading struct {
	clock func() time.Time
	at    int64       // Unix ns, or unread
	conn  *connecting // a connection to file with the user, by Engine.hold
}

// ns returns the reading, reading the clock first if nothing has.
func (r *reading) ns() int64 {
	if r.at == unread {
		r.at = r.clock().UnixNano()
	}
	return r.at
}
