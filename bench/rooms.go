package main

import (
	"cmp"
	"fmt"
	"hash/maphash"
	"io"
	"math/bits"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/centrifugal/centrifuge"
	"github.com/google/btree"
	"github.com/onlinenow/presence"
	"github.com/puzpuzpuz/xsync/v3"
)

// The rooms comparison: this library's rooms against centrifuge's
// MemoryPresenceManager, on two workloads. "chat": every user a member of
// one of users/10 rooms, the room drawn by Zipf (s=1.1), so that a few
// rooms are large and most small; "stream": one room of users/10 members.
// Each peer is filled with the memberships, then updates existing ones
// (Zipf over the users for chat, uniform for the stream) from -workers
// goroutines, the peers taking turns in chunks, then counts and lists its
// biggest room. A third row, "floor",
// is the least the engine's design must do with the parts it is built of
// (see floorRooms), to tell how far the engine is from its own floor.

// roomsResult is one peer on one workload.
type roomsResult struct {
	Workload      string  `json:"workload"`
	Peer          string  `json:"peer"`
	Rooms         int     `json:"rooms"`
	Memberships   int     `json:"memberships"`
	Biggest       int     `json:"biggest_room_members"`
	FillPerSec    float64 `json:"fill_per_sec"`
	UpdatesPerSec float64 `json:"updates_per_sec"`
	StatsNs       float64 `json:"stats_ns"` // members of the biggest room
	ListNs        float64 `json:"list_ns"`  // its newest 100 (the engine), all of it (the peer: Presence)
	BytesPerM     float64 `json:"bytes_per_membership"`
	Workers       int     `json:"workers"` // goroutines updating
}

// roomsPeer is what the comparison asks of each side.
type roomsPeer interface {
	add(room, id string)   // a membership seen now: joined, or updated
	stats(room string) int // how many are in the room
	list(room string) int  // the room's listing, for its length
}

type engineRooms struct{ e *presence.Engine }

func (p engineRooms) add(room, id string)   { p.e.TouchIn(room, id) }
func (p engineRooms) stats(room string) int { return p.e.Room(room).Count(time.Hour) }
func (p engineRooms) list(room string) int  { return len(p.e.Room(room).Recent(time.Hour, 100)) }

type centrifugeRooms struct {
	m *centrifuge.MemoryPresenceManager
}

func (p centrifugeRooms) add(room, id string) {
	p.m.AddPresence(room, id, &centrifuge.ClientInfo{ClientID: id, UserID: id})
}

func (p centrifugeRooms) stats(room string) int {
	st, _ := p.m.PresenceStats(room)
	return st.NumClients
}

func (p centrifugeRooms) list(room string) int {
	all, _ := p.m.Presence(room)
	return len(all)
}

// floorRooms is the floor of the parts a TouchIn must use, and no more:
// the clock read once, then a probe and compare-and-swap of the user's
// last-seen time and of the membership's, each in an xsync map (the
// membership's keyed and hashed as the engine's), and on a join an item
// in a global B-tree and in the room's. It moves no index entry when a
// time enters a new slot, keeps no counter, no user's room list and no room
// index, and takes no lock (its joins come from one goroutine, in the
// fill; updates of known memberships touch only the maps, which are safe
// from many), so it answers far less than the engine: its count is the
// room tree's length.
type floorRooms struct {
	seed    maphash.Seed
	users   *xsync.MapOf[string, *atomic.Int64]
	members *xsync.MapOf[floorKey, *atomic.Int64]
	global  *btree.BTreeG[floorItem]
	rooms   map[string]*btree.BTreeG[floorItem]
}

type floorKey struct{ room, id string }

type floorItem struct {
	ns int64
	id string
}

func floorLess(a, b floorItem) bool {
	return cmp.Or(cmp.Compare(a.ns, b.ns), strings.Compare(a.id, b.id)) < 0
}

func newFloorRooms() *floorRooms {
	p := &floorRooms{
		seed:   maphash.MakeSeed(),
		users:  xsync.NewMapOf[string, *atomic.Int64](),
		global: btree.NewG(32, floorLess),
		rooms:  make(map[string]*btree.BTreeG[floorItem]),
	}
	p.members = xsync.NewMapOfWithHasher[floorKey, *atomic.Int64](func(k floorKey, _ uint64) uint64 {
		return maphash.String(p.seed, k.room) ^ bits.RotateLeft64(maphash.String(p.seed, k.id), 29)
	})
	return p
}

func (p *floorRooms) add(room, id string) {
	ns := time.Now().UnixNano()
	if t, ok := p.users.Load(id); ok {
		raiseTo(t, ns)
	} else {
		t = new(atomic.Int64)
		t.Store(ns)
		p.users.Store(id, t)
		p.global.ReplaceOrInsert(floorItem{ns, id})
	}
	if t, ok := p.members.Load(floorKey{room, id}); ok {
		raiseTo(t, ns)
		return
	}
	t := new(atomic.Int64)
	t.Store(ns)
	p.members.Store(floorKey{room, id}, t)
	tr, ok := p.rooms[room]
	if !ok {
		tr = btree.NewG(32, floorLess)
		p.rooms[room] = tr
	}
	tr.ReplaceOrInsert(floorItem{ns, id})
}

func raiseTo(t *atomic.Int64, ns int64) {
	for old := t.Load(); ns > old && !t.CompareAndSwap(old, ns); old = t.Load() {
	}
}

func (p *floorRooms) stats(room string) int {
	if tr, ok := p.rooms[room]; ok {
		return tr.Len()
	}
	return 0
}

func (p *floorRooms) list(room string) int {
	n := 0
	if tr, ok := p.rooms[room]; ok {
		tr.Descend(func(floorItem) bool { n++; return n < 100 })
	}
	return n
}

func newRoomsPeer(name string) (roomsPeer, error) {
	switch name {
	case "engine":
		return engineRooms{presence.New()}, nil
	case "floor":
		return newFloorRooms(), nil
	}
	node, err := centrifuge.New(centrifuge.Config{})
	if err != nil {
		return nil, err
	}
	m, err := centrifuge.NewMemoryPresenceManager(node, centrifuge.MemoryPresenceManagerConfig{})
	return centrifugeRooms{m}, err
}

// runRooms runs both workloads on the engine, its floor and the peer.
func runRooms(p params) ([]roomsResult, error) {
	var out []roomsResult
	for _, workload := range []string{"chat", "stream"} {
		rs, err := roomsWorkload(p, workload, []string{"engine", "floor", "centrifuge"})
		if err != nil {
			return nil, fmt.Errorf("rooms %s: %w", workload, err)
		}
		out = append(out, rs...)
	}
	return out, nil
}

// roomsChunks is how many chunks the updates are cut into: the peers take
// turns chunk by chunk, so that a slow moment of a shared machine (another
// tenant, a collection of another peer's garbage) falls on all of them
// alike, and their ratios repeat from run to run.
const roomsChunks = 24

// roomsWorkload fills each peer with the workload's memberships, one after
// the other (each one's bytes measured apart), then has them update the
// same memberships, in the same order, interleaved in chunks, each chunk
// from p.Workers goroutines; then counts and lists the biggest room.
func roomsWorkload(p params, workload string, peerNames []string) ([]roomsResult, error) {
	n := p.Users // chat: every user in a room
	rooms := max(1, p.Users/10)
	if workload == "stream" {
		n, rooms = max(1, p.Users/10), 1
	}
	// Each membership's room and ID, made before the heap is measured; the
	// fill hands each peer copies of its own to keep.
	ids := make([]string, n)
	roomOf := make([]string, n)
	names := make([]string, rooms)
	for i := range names {
		names[i] = fmt.Sprint("room-", i)
	}
	pick := newKeys(rooms, "zipf", 1.1, p.Seed)
	size := make([]int, rooms)
	for i := range ids {
		ids[i] = fmt.Sprint("u", i)
		room := 0
		if rooms > 1 {
			room = pick.next()
		}
		roomOf[i] = names[room]
		size[room]++
	}
	biggest := 0
	for i, s := range size {
		if s > size[biggest] {
			biggest = i
		}
	}
	dist := "zipf"
	if workload == "stream" {
		dist = "uniform"
	}
	next := newKeys(n, dist, 1.1, p.Seed+1)
	seq := make([]int32, max(2*n, 100_000)/roomsChunks*roomsChunks)
	for i := range seq {
		seq[i] = int32(next.next())
	}

	peers := make([]roomsPeer, len(peerNames))
	out := make([]roomsResult, len(peerNames))
	for k, name := range peerNames {
		r := &out[k]
		*r = roomsResult{Workload: workload, Peer: name, Rooms: rooms, Memberships: n, Biggest: size[biggest], Workers: p.Workers}
		before := heapInUse()
		peer, err := newRoomsPeer(name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		start := time.Now()
		for i, id := range ids {
			peer.add(strings.Clone(roomOf[i]), strings.Clone(id))
		}
		r.FillPerSec = float64(n) / time.Since(start).Seconds()
		r.BytesPerM = float64(int64(heapInUse())-int64(before)) / float64(n)
		peers[k] = peer
	}

	spent := make([]time.Duration, len(peers))
	chunk := len(seq) / roomsChunks
	for c := range roomsChunks {
		part := seq[c*chunk : (c+1)*chunk]
		for j := range peers {
			k := (c + j) % len(peers) // each peer first in turn
			spent[k] += updateChunk(peers[k], part, roomOf, ids, p.Workers)
		}
	}
	big := names[biggest]
	for k, peer := range peers {
		r := &out[k]
		r.UpdatesPerSec = float64(len(seq)) / spent[k].Seconds()
		if got := peer.stats(big); got != size[biggest] {
			return nil, fmt.Errorf("%s: the biggest room counts %d members, holds %d", r.Peer, got, size[biggest])
		}
		r.StatsNs = timePerCall(func() { peer.stats(big) })
		r.ListNs = timePerCall(func() { peer.list(big) })
	}
	runtime.KeepAlive(peers)
	return out, nil
}

// updateChunk has peer update the memberships of part, split between
// workers goroutines, and returns the time it took.
func updateChunk(peer roomsPeer, part []int32, roomOf, ids []string, workers int) time.Duration {
	var wg sync.WaitGroup
	start := time.Now()
	per := (len(part) + workers - 1) / workers
	for w := range workers {
		mine := part[min(w*per, len(part)):min((w+1)*per, len(part))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, i := range mine {
				peer.add(roomOf[i], ids[i])
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

// timePerCall returns the mean time of f, called for at least 100 ms and
// at least 3 times.
func timePerCall(f func()) float64 {
	calls, start := 0, time.Now()
	for calls < 3 || time.Since(start) < 100*time.Millisecond {
		f()
		calls++
	}
	return float64(time.Since(start).Nanoseconds()) / float64(calls)
}

// printRooms prints the comparison, the engine's row over the peer's, and
// the engine's advantage.
func printRooms(w io.Writer, results []roomsResult) {
	workers := 0
	if len(results) > 0 {
		workers = results[0].Workers
	}
	fmt.Fprintf(w, "\nrooms: this engine against centrifuge's MemoryPresenceManager, updates from %d goroutines, the peers interleaved\n", workers)
	fmt.Fprintf(w, "%10s %11s %7s %12s %8s %10s %10s %12s %12s %10s\n",
		"workload", "peer", "rooms", "memberships", "biggest", "fill/s", "updates/s", "count(big)", "list(big)", "bytes/m")
	for _, r := range results {
		fmt.Fprintf(w, "%10s %11s %7d %12d %8d %10s %10s %12s %12s %10.0f\n",
			r.Workload, r.Peer, r.Rooms, r.Memberships, r.Biggest, si(r.FillPerSec), si(r.UpdatesPerSec),
			dur(r.StatsNs), dur(r.ListNs), r.BytesPerM)
	}
	for i := 0; i+2 < len(results); i += 3 {
		e, f, c := results[i], results[i+1], results[i+2]
		fmt.Fprintf(w, "%s: engine %s the peer's updates/s, counts %s faster, lists its newest 100 %s faster than the peer lists the room, %s its bytes per membership\n",
			e.Workload, ratio(e.UpdatesPerSec, c.UpdatesPerSec), ratio(c.StatsNs, e.StatsNs), ratio(c.ListNs, e.ListNs), ratio(e.BytesPerM, c.BytesPerM))
		fmt.Fprintf(w, "%s: floor %s the peer's updates/s, %s its bytes per membership; engine %s the floor's updates/s\n",
			f.Workload, ratio(f.UpdatesPerSec, c.UpdatesPerSec), ratio(f.BytesPerM, c.BytesPerM), ratio(e.UpdatesPerSec, f.UpdatesPerSec))
	}
}
