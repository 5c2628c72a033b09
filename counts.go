package presence

import "github.com/google/btree"

// slotCounts counts a shard's users per index slot, so that "how many users
// since slot x" costs a few hundred array reads, not a walk over the users.
//
// The counters form a ring of horizon slots ending at head, the newest slot
// counted: slot s lives at s & (horizon-1). Sums over 64 and 4096 slots sit
// beside them, so a range sum reads at most ~170 words. Per-slot counters
// are allocated 4096 at a time, for blocks that count someone (and head's):
// a full ring is 512 KiB, too much for each of 256 small shards. Users of
// slots that left the ring are only counted in old; a count reaching that
// far back walks the tree for them.
//
// head follows the newest slot filed, but never beyond horizon/64 slots
// ahead of the clock: users filed further ahead are counted by slot in
// ahead until head reaches them, so that one time a day ahead cannot push
// the present off the ring.
//
// Not safe for concurrent use: the shard's lock guards it.
type slotCounts struct {
	horizon int64 // power of two, >= 4096
	res     int64 // the engine's resolution
	head    int64
	started bool
	old     int // users filed at head-horizon or older
	inRing  int // users filed in the ring
	ahead   aheadCounts
	per     [][]int32 // horizon/4096 blocks of 4096; nil while a block's by4096 is 0, but head's
	by64    []int32
	by4096  []int32
}

// blockSlots is how many slots a block of per-slot counters holds: a
// by4096 sum each.
const blockSlots = 4096

// add counts d more users at slot. It reads now only for d > 0 beyond head
// (or the first user), to decide whether head may move there.
func (c *slotCounts) add(slot int64, d int, now *reading) {
	if !c.started {
		c.per = make([][]int32, c.horizon/blockSlots)
		c.by64 = make([]int32, c.horizon/64)
		c.by4096 = make([]int32, c.horizon/4096)
		c.head, c.started = min(slot, slotOf(now.ns(), c.res)+c.horizon/64), true
	}
	if slot > c.head {
		// Users beyond head are exactly those counted ahead, so one that
		// leaves is taken from there without asking the clock.
		if d < 0 || slot > slotOf(now.ns(), c.res)+c.horizon/64 {
			c.ahead.add(slot, d)
			return
		}
		c.advance(slot)
	}
	if slot <= c.head-c.horizon {
		c.old += d
		return
	}
	c.bump(int(slot&(c.horizon-1)), int32(d))
	c.inRing += d
}

func (c *slotCounts) bump(p int, d int32) {
	b := p >> 12
	if c.per[b] == nil {
		c.per[b] = make([]int32, blockSlots)
	}
	c.per[b][p&(blockSlots-1)] += d
	c.by64[p>>6] += d
	if c.by4096[b] += d; c.by4096[b] == 0 && b != c.headBlock() {
		// Empty. Head's block stays, or moves within it would churn it.
		c.per[b] = nil
	}
}

// at returns the counter at ring position p.
func (c *slotCounts) at(p int) int32 {
	if b := c.per[p>>12]; b != nil {
		return b[p&(blockSlots-1)]
	}
	return 0
}

// headBlock is the block of per-slot counters holding head.
func (c *slotCounts) headBlock() int { return int(c.head&(c.horizon-1)) >> 12 }

// advance moves head to slot, folding the slots that leave the ring into
// old, then takes in the users counted ahead that head has reached.
func (c *slotCounts) advance(slot int64) {
	prev := c.headBlock()
	c.fold(slot)
	c.head = slot
	if c.headBlock() != prev && c.by4096[prev] == 0 {
		c.per[prev] = nil
	}
	for c.ahead.n > 0 {
		first, _ := c.ahead.tree.Min()
		if first.slot > slot {
			break
		}
		c.ahead.add(first.slot, -first.n)
		c.add(first.slot, first.n, nil)
	}
}

// fold folds the slots that leave the ring as head moves to slot into old.
// It skips empty 4096- and 64-slot blocks whole, so its cost follows the
// users it folds, not the distance: a head jumping far ahead stays cheap.
func (c *slotCounts) fold(slot int64) {
	if c.inRing == 0 {
		return
	}
	if slot-c.head >= c.horizon {
		c.old += c.inRing
		c.inRing = 0
		clear(c.per)
		clear(c.by64)
		clear(c.by4096)
		return
	}
	mask := c.horizon - 1
	for s, end := c.head-c.horizon+1, slot-c.horizon; s <= end; {
		p := int(s & mask)
		switch {
		case p&4095 == 0 && s+4095 <= end && c.by4096[p>>12] == 0:
			s += 4096
		case p&63 == 0 && s+63 <= end && c.by64[p>>6] == 0:
			s += 64
		default:
			if v := c.at(p); v != 0 {
				c.bump(p, -v)
				c.old += int(v)
				c.inRing -= int(v)
			}
			s++
		}
	}
}

// since returns how many users are filed at slot from or newer, counting
// the ring and ahead, and whether the ring covers from entirely (if not, the
// caller adds the old users at from or newer).
func (c *slotCounts) since(from int64) (n int, complete bool) {
	if !c.started {
		return 0, true
	}
	if from > c.head {
		return c.ahead.since(from), true
	}
	n = c.ahead.n // all of them are beyond head
	if from <= c.head-c.horizon {
		return n + c.inRing, c.old == 0
	}
	lo, hi := int(from&(c.horizon-1)), int(c.head&(c.horizon-1))+1
	if lo < hi {
		return n + c.sum(lo, hi), true
	}
	return n + c.sum(lo, int(c.horizon)) + c.sum(0, hi), true
}

// sum adds the counters at ring positions [lo, hi): whole blocks by their
// sums, and each end's remainder as the fewer reads of itself or its
// block's sum less the rest (partSum).
func (c *slotCounts) sum(lo, hi int) int {
	n := 0
	if end := min(hi, (lo+63)&^63); lo < end {
		n += c.slots(lo, end)
		lo = end
	}
	if end := min(hi&^63, (lo+4095)&^4095); lo < end {
		n += c.sixtyFours(lo, end)
		lo = end
	}
	for ; lo+4096 <= hi; lo += 4096 {
		n += int(c.by4096[lo>>12])
	}
	if end := hi &^ 63; lo < end {
		n += c.sixtyFours(lo, end)
		lo = end
	}
	if lo < hi {
		n += c.slots(lo, hi)
	}
	return n
}

// slots adds the per-slot counters at [lo, hi), within one 64-slot block.
func (c *slotCounts) slots(lo, hi int) int {
	b := c.per[lo>>12]
	if b == nil {
		return 0
	}
	start := lo &^ 63
	return partSum(b[start&4095:][:64], int(c.by64[lo>>6]), lo-start, hi-start)
}

// sixtyFours adds the 64-slot sums at [lo, hi), which are multiples of 64
// within one 4096-slot block.
func (c *slotCounts) sixtyFours(lo, hi int) int {
	start := lo &^ 4095
	return partSum(c.by64[start>>6:][:64], int(c.by4096[lo>>12]), (lo-start)>>6, (hi-start)>>6)
}

// partSum adds block[from:to] of 64 counters that add up to total, as total
// less the rest when that reads fewer words.
func partSum(block []int32, total, from, to int) int {
	if to-from <= 32 {
		return sum32(block[from:to])
	}
	return total - sum32(block[:from]) - sum32(block[to:])
}

func sum32(s []int32) int {
	n := 0
	for _, v := range s {
		n += int(v)
	}
	return n
}

// aheadCounts counts by slot the users filed beyond a ring's head; empty
// unless times come from far ahead of the clock.
type aheadCounts struct {
	tree *btree.BTreeG[slotCount]
	n    int
}

type slotCount struct {
	slot int64
	n    int
}

func (a *aheadCounts) add(slot int64, d int) {
	if a.tree == nil {
		a.tree = btree.NewG(8, func(x, y slotCount) bool { return x.slot < y.slot })
	}
	a.n += d
	sc, _ := a.tree.Get(slotCount{slot: slot})
	if sc.slot, sc.n = slot, sc.n+d; sc.n == 0 {
		a.tree.Delete(sc)
	} else {
		a.tree.ReplaceOrInsert(sc)
	}
}

// since returns how many users are counted at slot from or newer.
func (a *aheadCounts) since(from int64) int {
	n := 0
	if a.n > 0 {
		a.tree.AscendGreaterOrEqual(slotCount{slot: from}, func(sc slotCount) bool {
			n += sc.n
			return true
		})
	}
	return n
}
