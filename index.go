package presence

import (
	"container/heap"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"math/bits"
	"sync"
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
// one slot in one second; ordered only by a hash of the ID, each would land
// at a random place in a large part of the tree, a few cache misses per level
// (2.4 against 1.8 us per move, a million users entering a new second in
// random order). The hash settles ties within a step without reading IDs,
// which are in other cache lines: many users share one step when callers
// pass times from a coarse clock, or load users with one timestamp. The ID
// breaks the remaining ties and gives paging a total order (a B-tree keeps
// no two equal items).
//
// An item is 16 bytes: the ID is read from the entry, which carries its
// bytes (newEntry). Index nodes are about half full when users arrive in
// time order (every split leaves a half-full node behind), so each byte of
// an item costs about two per user; TestItemLayout pins the size.
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

// Cursor is a position in a newest-first walk of the index: the place of
// the last user a page returned. The next page starts strictly after it, so
// a user touched between pages moves ahead of the cursor and is not
// returned twice, and a user left alone is not skipped.
//
// The zero Cursor is the start of a walk. A Cursor is a plain value, safe to
// copy and to use from several goroutines. Its text form (MarshalText) is
// opaque and URL-safe; it names an ID, so do not hand it to clients that may
// not see that ID. A cursor belongs to engines of the resolution that made
// it; after a restart it still never repeats a user, but, as for users
// touched meanwhile, one restored at a newer place within its slot is
// skipped.
type Cursor struct {
	key int64 // the item's key
	id  string
	set bool
}

// IsZero reports whether c is the start of a walk, which is also what
// [Engine.Page] returns when there is nothing after the page.
func (c Cursor) IsZero() bool { return !c.set }

// MarshalText encodes c as unpadded base64url text. The zero Cursor encodes
// as the empty string.
func (c Cursor) MarshalText() ([]byte, error) {
	if !c.set {
		return []byte{}, nil
	}
	raw := binary.AppendVarint(nil, c.key)
	raw = append(raw, c.id...)
	out := make([]byte, base64.RawURLEncoding.EncodedLen(len(raw)))
	base64.RawURLEncoding.Encode(out, raw)
	return out, nil
}

// UnmarshalText decodes text made by MarshalText. Anything else gives an
// error wrapping [ErrInvalidCursor], and c is left unchanged.
func (c *Cursor) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		*c = Cursor{}
		return nil
	}
	if len(text) > base64.RawURLEncoding.EncodedLen(binary.MaxVarintLen64+MaxIDLen) {
		return fmt.Errorf("%w: %d bytes is too long", ErrInvalidCursor, len(text))
	}
	raw, err := base64.RawURLEncoding.DecodeString(string(text))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidCursor, err)
	}
	key, n := binary.Varint(raw)
	if n <= 0 {
		return fmt.Errorf("%w: bad position", ErrInvalidCursor)
	}
	id := string(raw[n:])
	if !validID(id) || key&(1<<idLenBits-1) != int64(len(id)) {
		return fmt.Errorf("%w: bad id", ErrInvalidCursor)
	}
	*c = Cursor{key: key, id: id, set: true}
	return nil
}

// String returns the text form of c.
func (c Cursor) String() string {
	b, _ := c.MarshalText()
	return string(b)
}

// window is one walk of the index: users filed at slot from or newer,
// strictly after cursor, newest first, at most limit of them (limit <= 0: all).
type window struct {
	from  int64
	after item // the cursor, if has; otherwise start at the newest
	has   bool
	limit int
}

// collect returns up to w.limit items of s in the window, newest first. It
// holds the shard's read lock for O(log n + k).
func (s *shard) collect(w window, buf []item) []item {
	s.mu.RLock()
	defer s.mu.RUnlock()
	visit := func(it item) bool {
		if s.lay.slot(it) < w.from {
			return false
		}
		if w.has && !itemLess(it, w.after) {
			return true // the cursor itself
		}
		buf = append(buf, it)
		return w.limit <= 0 || len(buf) < w.limit
	}
	if w.has {
		s.tree.DescendLessOrEqual(w.after, visit)
	} else {
		s.tree.Descend(visit)
	}
	return buf
}

// walk appends to sc.merged up to w.limit items of the window (w.limit <=
// 0: all), newest first, merged across shards. It reads each shard a
// chunk at a time: a first chunk of about twice the shard's share of the
// limit, and another, after the last item it read there, only when the
// merge has taken every item read from that shard. So a page of k users
// costs O(shards x (log n + k/shards) + k x log shards), not the
// O(shards x k) of reading k from every shard, which at 256 shards (the
// default at 64 cores) read 25,600 items for a page of 100.
func (sc *scratch) walk(shards []*shard, w window) {
	per := w.limit // every item, in one read per shard, without a limit
	if w.limit > 0 {
		per = min(w.limit, 2*w.limit/len(shards)+4)
	}
	for len(sc.lists) < len(shards) {
		sc.lists = append(sc.lists, nil)
	}
	sc.heads = sc.heads[:0]
	for i, s := range shards {
		part := w
		part.limit = per
		sc.lists[i] = s.collect(part, sc.lists[i][:0])
		if len(sc.lists[i]) > 0 {
			sc.heads = append(sc.heads, walkHead{shard: i, more: per > 0 && len(sc.lists[i]) == per, per: per})
		}
	}
	heap.Init(sc)
	for len(sc.heads) > 0 && (w.limit <= 0 || len(sc.merged) < w.limit) {
		h := &sc.heads[0]
		list := sc.lists[h.shard]
		sc.merged = append(sc.merged, list[h.next])
		if h.next++; h.next == len(list) {
			if !h.more {
				heap.Pop(sc)
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
			h.per = min(2*h.per, w.limit-len(sc.merged))
			part.limit = h.per
			list = shards[h.shard].collect(part, list[:0])
			sc.lists[h.shard], h.next, h.more = list, 0, len(list) == h.per
			if len(list) == 0 {
				heap.Pop(sc)
				continue
			}
		}
		heap.Fix(sc, 0)
	}
}

// walkHead is a shard's place in a walk: the next item of its list to merge.
type walkHead struct {
	shard int
	next  int  // in sc.lists[shard]
	more  bool // the list was read up to its limit: the shard may hold more
	per   int  // the limit the list was read with
}

// The heap of a walk's heads, newest head item first (container/heap).
func (sc *scratch) Len() int { return len(sc.heads) }
func (sc *scratch) Less(i, j int) bool {
	a, b := sc.heads[i], sc.heads[j]
	return itemLess(sc.lists[b.shard][b.next], sc.lists[a.shard][a.next])
}
func (sc *scratch) Swap(i, j int) { sc.heads[i], sc.heads[j] = sc.heads[j], sc.heads[i] }
func (sc *scratch) Push(x any)    { sc.heads = append(sc.heads, x.(walkHead)) }
func (sc *scratch) Pop() any {
	h := sc.heads[len(sc.heads)-1]
	sc.heads = sc.heads[:len(sc.heads)-1]
	return h
}

// scratch holds a page walk's buffers between calls, so that a dashboard
// polling Recent does not allocate (and make the collector scan a large
// heap) for every call.
type scratch struct {
	lists  [][]item   // one per shard
	heads  []walkHead // the heap of shards with items left to merge
	merged []item
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

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
	sc.heads = sc.heads[:0]
	if n <= maxPooledItems {
		scratchPool.Put(sc)
	}
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
	// Check the seconds rather than round-tripping, which would cost the
	// hot path a call.
	if sec := t.Unix(); sec <= minNano/int64(time.Second) || sec >= maxNano/int64(time.Second) {
		return 0, false
	}
	return t.UnixNano(), true
}
