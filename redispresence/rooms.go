package redispresence

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/middleware"
	"github.com/onlinenow/presence/presencehttp"
	"github.com/redis/go-redis/v9"
)

var (
	_ middleware.RoomRecorder = (*Store)(nil)
	_ presencehttp.Querier    = Room{}
)

// setRef names a sorted set the flusher writes.
type setRef struct {
	kind setKind
	n    int    // the shard: of the user (usersSet, inSet) or of the room (roomSet, indexSet)
	name string // the room (roomSet)
}

type setKind uint8

const (
	usersSet setKind = iota // users by last-seen time
	roomSet                 // a room's members by their time in it
	inSet                   // memberships of the shard's users: "id NUL room", all scored 0
	indexSet                // rooms by their latest activity
)

// keyOf is the name of the set r. Every key of a shard n carries the hash
// tag {n}, so that the events' scripts, which read and write a shard's
// sets, stream and state together, run on Redis Cluster; a room's key is
// tagged by its name's shard, not by anything in the name.
func (s *Store) keyOf(r setRef) string {
	switch r.kind {
	case roomSet:
		return s.cfg.prefix + ":room:{" + strconv.Itoa(r.n) + "}" + r.name
	case inSet:
		return s.cfg.prefix + ":in:{" + strconv.Itoa(r.n) + "}"
	case indexSet:
		return s.cfg.prefix + ":rooms:{" + strconv.Itoa(r.n) + "}"
	}
	return s.userKeys[r.n]
}

func (s *Store) roomKey(room string) string { return s.keyOf(setRef{roomSet, s.shardOf(room), room}) }
func (s *Store) inKey(id string) string     { return s.keyOf(setRef{kind: inSet, n: s.shardOf(id)}) }

// inMember is a membership's member of the list of its user's shard. A
// room name holds no NUL, so the last NUL ends the ID (which may hold one).
func inMember(id, room string) string { return id + "\x00" + room }

// inRange is the lexical range of id's memberships: it also holds those of
// IDs that start with id and a NUL, which inRooms leaves out.
func inRange(id string) (lo, hi string) { return "[" + id + "\x00", "(" + id + "\x01" }

// inRooms returns the rooms of id among members read from inRange.
func inRooms(id string, members []string) []string {
	var rooms []string
	for _, m := range members {
		if i := strings.LastIndexByte(m, 0); i == len(id) && m[:i] == id {
			rooms = append(rooms, m[i+1:])
		}
	}
	return rooms
}

// memberships reads id's rooms from its list.
func (s *Store) memberships(ctx context.Context, id string) ([]string, error) {
	lo, hi := inRange(id)
	ms, err := s.rdb.ZRangeByLex(ctx, s.inKey(id), &redis.ZRangeBy{Min: lo, Max: hi}).Result()
	return inRooms(id, ms), err
}
func (s *Store) indexKey(n int) string { return s.keyOf(setRef{kind: indexSet, n: n}) }

// TouchIn records activity by id now (the Store's clock) in room, and
// globally; see [Store.TouchInAt].
func (s *Store) TouchIn(room, id string) { s.TouchInAt(room, id, s.cfg.now()) }

// TouchInAt records activity by id at the given time in room, and globally
// as [Store.TouchAt] does, in the same buffer: the flusher sends a
// membership's newest time once per interval, however often it is touched.
// A room name [presence.ValidRoom] refuses is ignored (the global touch is
// still recorded).
func (s *Store) TouchInAt(room, id string, at time.Time) {
	if id == "" || len(id) > presence.MaxIDLen || at.IsZero() {
		return
	}
	s.touches.Inc()
	ns := at.UnixNano()
	s.raise(entryKey{id: id}, ns)
	if room != "" {
		s.raise(entryKey{room, id}, ns) // an invalid name is refused by insert
	}
}

// Leave ends id's membership of room in Redis and in this Store's buffer;
// id's global time stays. It reports whether id was a member. A touch of
// the membership still buffered on another Store joins it again at that
// Store's next flush, as a touch after a Leave does.
func (s *Store) Leave(ctx context.Context, room, id string) (bool, error) {
	// Under the flush lock: a flush in progress would write the membership
	// back after the ZREM.
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
	defer cancel()
	buffered := s.drop(entryKey{room, id})
	pipe := s.rdb.Pipeline()
	// ZREM and the Leave event in one script: a sweep between them would
	// publish a Leave of its own.
	n := s.remove(ctx, pipe, setRef{roomSet, s.shardOf(room), room}, id)
	pipe.ZRem(ctx, s.inKey(id), inMember(id, room))
	if _, err := pipe.Exec(ctx); err != nil {
		return false, fmt.Errorf("redispresence: leave: %w", err)
	}
	removed, _ := n.Result()
	return buffered || removed > 0, nil
}

// Forget removes a user from Redis and from the buffer: its time, meta and
// memberships, publishing Offline and Leave (WithEvents) if it was online.
// It walks the buffer for the user's memberships, so it costs
// O(buffer).
func (s *Store) Forget(ctx context.Context, id string) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
	defer cancel()
	s.buf.Range(func(k entryKey, _ *pending) bool {
		if k.id == id {
			s.drop(k)
		}
		return true
	})
	rooms, err := s.memberships(ctx, id)
	if err != nil {
		return fmt.Errorf("redispresence: forget: %w", err)
	}
	k := s.shardOf(id)
	pipe := s.rdb.Pipeline()
	s.remove(ctx, pipe, setRef{kind: usersSet, n: k}, id)
	pipe.HDel(ctx, s.metaKey(k), id)
	for _, room := range rooms {
		s.remove(ctx, pipe, setRef{roomSet, s.shardOf(room), room}, id)
		pipe.ZRem(ctx, s.inKey(id), inMember(id, room))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redispresence: forget: %w", err)
	}
	return nil
}

// goneFor is how long a tombstone lasts: a resend leaves out the times of
// entries removed (by Leave, Forget, the room caps or the rooms'
// retention) after them, so that a Store's resend after a failover does
// not write back what another Store removed meanwhile. A resend sends no
// batch older than it.
const goneFor = 10 * time.Minute

func (s *Store) goneKey(n int) string { return s.cfg.prefix + ":gone:{" + strconv.Itoa(n) + "}" }

// tombstone names, in the tombstones of its set's shard, an entry of ref
// removed, or with member "" the end of the room ref names (for its set
// and its index entry).
func tombstone(ref setRef, member string) string {
	switch {
	case ref.kind == usersSet:
		return "u:" + member
	case ref.kind == indexSet:
		return "e:" + member // the index's members are the rooms
	case member == "":
		return "e:" + ref.name
	}
	return "r:" + ref.name + "\x00" + member
}

// bury queues, on pipe, tombstones at now for the members of ref (or, for
// the member "", the end of its room), and the removal of those older than
// goneFor from the shard's set.
func (s *Store) bury(ctx context.Context, pipe redis.Pipeliner, ref setRef, members ...string) {
	now := s.cfg.now().UnixMicro()
	zs := make([]redis.Z, len(members))
	for i, m := range members {
		zs[i] = redis.Z{Score: float64(now), Member: tombstone(ref, m)}
	}
	key := s.goneKey(ref.n)
	pipe.ZAdd(ctx, key, zs...)
	pipe.ZRemRangeByScore(ctx, key, "-inf", "("+strconv.FormatInt(now-goneFor.Microseconds(), 10))
}

// buried returns the tombstones of every shard, by name, with their times.
func (s *Store) buried(ctx context.Context) (map[string]float64, error) {
	lo := strconv.FormatInt(s.cfg.now().Add(-goneFor).UnixMicro(), 10)
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.ZSliceCmd, s.cfg.keys)
	for n := range cmds {
		cmds[n] = pipe.ZRangeByScoreWithScores(ctx, s.goneKey(n), &redis.ZRangeBy{Min: lo, Max: "+inf"})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, wrap("tombstones", err)
	}
	gone := map[string]float64{}
	for _, c := range cmds {
		for _, z := range c.Val() {
			gone[z.Member.(string)] = z.Score
		}
	}
	return gone, nil
}

// alive reports whether a resent z of ref is not older than a removal of
// it or the end of its room.
func alive(gone map[string]float64, ref setRef, z redis.Z) bool {
	if ref.kind == inSet {
		return true // a stray membership is left out by roomTimes
	}
	if at, ok := gone[tombstone(ref, z.Member.(string))]; ok && at >= z.Score {
		return false
	}
	if at, ok := gone[tombstone(ref, "")]; ok && ref.kind == roomSet && at >= z.Score {
		return false
	}
	return true
}

// Room is a read view of one room in Redis: its members, each with the
// time it was last seen in the room. It is a plain value, safe for
// concurrent use, and a presencehttp.Querier. A room no one is in is empty.
type Room struct {
	s    *Store
	name string
	keys []string // the room's one set
}

// Room returns the view of the room called name.
func (s *Store) Room(name string) Room { return Room{s, name, []string{s.roomKey(name)}} }

// Name returns the room's name.
func (r Room) Name() string { return r.name }

// CountSince returns how many members were seen in the room at t or later:
// one ZCOUNT.
func (r Room) CountSince(ctx context.Context, t time.Time) (int, error) {
	return r.s.count(ctx, r.keys, t)
}

// Page returns up to limit members seen in the room since t, newest first
// by their time in the room, after the cursor, as [Store.Page] does for all
// users; Activity.Meta is the user's.
func (r Room) Page(ctx context.Context, t time.Time, cursor string, limit int) ([]presence.Activity, string, error) {
	return r.s.page(ctx, r.keys, t, cursor, limit)
}

// Get returns id's activity in the room (LastSeen is the time in the room,
// Meta the user's), or false if id is not a member.
func (r Room) Get(ctx context.Context, id string) (presence.Activity, bool, error) {
	return r.s.get(ctx, r.keys[0], id)
}

// RoomsOf returns the rooms id is in, most recently active first (ties by
// name), leaving out memberships older than the retention: one read of the
// user's memberships and one ZSCORE per room, so that rooms ended
// meanwhile are left out too.
func (s *Store) RoomsOf(ctx context.Context, id string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
	defer cancel()
	in, err := s.roomTimes(ctx, id)
	if err != nil {
		return nil, wrap("rooms of", err)
	}
	cutoff := s.cutoff()
	var out []string
	for _, r := range in {
		if r.us >= cutoff {
			out = append(out, r.room)
		}
	}
	return out, nil
}

// roomTime is a membership's room and time in it.
type roomTime struct {
	room string
	us   float64
}

// roomTimes returns id's memberships with their times, most recent first
// (ties by name), leaving out those of rooms that no longer hold id.
func (s *Store) roomTimes(ctx context.Context, id string) ([]roomTime, error) {
	rooms, err := s.memberships(ctx, id)
	if err != nil || len(rooms) == 0 {
		return nil, err
	}
	pipe := s.rdb.Pipeline()
	scores := make([]*redis.FloatCmd, len(rooms))
	for i, room := range rooms {
		scores[i] = pipe.ZScore(ctx, s.roomKey(room), id)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	var got []roomTime
	for i, room := range rooms {
		if us, err := scores[i].Result(); err == nil {
			got = append(got, roomTime{room, us})
		}
	}
	slices.SortFunc(got, func(a, b roomTime) int { return cmp.Or(cmp.Compare(b.us, a.us), strings.Compare(a.room, b.room)) })
	return got, nil
}

// Rooms returns the rooms with members seen at since or later, busiest
// first (ties by name), at most limit of them (limit <= 0: all), as the
// engine's Rooms does. It reads the rooms active since then from the index
// and counts each (one ZCOUNT per room, pipelined): O(rooms active).
func (s *Store) Rooms(ctx context.Context, since time.Time, limit int) ([]presence.RoomCount, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
	defer cancel()
	lo := strconv.FormatInt(since.UnixMicro(), 10)
	pipe := s.rdb.Pipeline()
	names := make([]*redis.StringSliceCmd, s.cfg.keys)
	for k := range names {
		names[k] = pipe.ZRangeByScore(ctx, s.indexKey(k), &redis.ZRangeBy{Min: lo, Max: "+inf"})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, wrap("rooms", err)
	}
	var rooms []string
	for _, c := range names {
		rooms = append(rooms, c.Val()...)
	}
	if len(rooms) == 0 {
		return nil, nil
	}
	pipe = s.rdb.Pipeline()
	counts := make([]*redis.IntCmd, len(rooms))
	for i, room := range rooms {
		counts[i] = pipe.ZCount(ctx, s.roomKey(room), lo, "+inf")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, wrap("rooms", err)
	}
	var out []presence.RoomCount
	for i, room := range rooms {
		if n := int(counts[i].Val()); n > 0 {
			out = append(out, presence.RoomCount{Room: room, Count: n})
		}
	}
	slices.SortFunc(out, func(a, b presence.RoomCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Room, b.Room))
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit:limit]
	}
	return out, nil
}

// cutoff is the oldest score retention keeps (Unix microseconds), or -Inf.
func (s *Store) cutoff() float64 {
	if s.cfg.retention <= 0 {
		return -1 << 63
	}
	return float64(s.cfg.now().Add(-s.cfg.retention).UnixMicro())
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("redispresence: %s: %w", what, err)
}

// capMemberships makes each user of ids whose memberships (their number
// in cards) are more than WithMaxRoomsPerUser leave the rooms it was least
// recently active in. A user's list and its rooms are in other Cluster
// slots, so this takes round trips, not a script; it runs only for users
// over the cap.
func (s *Store) capMemberships(ctx context.Context, ids []string, cards []*redis.IntCmd) error {
	pipe := s.rdb.Pipeline()
	over := false
	for i, c := range cards {
		if c.Val() <= int64(s.cfg.perUser) {
			continue
		}
		in, err := s.roomTimes(ctx, ids[i])
		if err != nil {
			return wrap("rooms per user", err)
		}
		for _, r := range in[min(len(in), s.cfg.perUser):] {
			s.remove(ctx, pipe, setRef{roomSet, s.shardOf(r.room), r.room}, ids[i])
			pipe.ZRem(ctx, s.inKey(ids[i]), inMember(ids[i], r.room))
			over = true
		}
	}
	if !over {
		return nil
	}
	_, err := pipe.Exec(ctx)
	return wrap("rooms per user", err)
}

// capRooms ends the least recently active rooms beyond WithMaxRooms, after
// a flush that added rooms to the index: it reads each index set's size,
// and, when over, the oldest rooms of each, and deletes the oldest of all.
func (s *Store) capRooms(ctx context.Context, added int64) error {
	if s.cfg.maxRooms <= 0 || added == 0 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	cards := make([]*redis.IntCmd, s.cfg.keys)
	for k := range cards {
		cards[k] = pipe.ZCard(ctx, s.indexKey(k))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return wrap("max rooms", err)
	}
	total := int64(0)
	for _, c := range cards {
		total += c.Val()
	}
	excess := total - int64(s.cfg.maxRooms)
	if excess <= 0 {
		return nil
	}
	pipe = s.rdb.Pipeline()
	oldest := make([]*redis.ZSliceCmd, s.cfg.keys)
	for k := range oldest {
		oldest[k] = pipe.ZRangeWithScores(ctx, s.indexKey(k), 0, excess-1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return wrap("max rooms", err)
	}
	var all []redis.Z
	for _, c := range oldest {
		all = append(all, c.Val()...)
	}
	slices.SortFunc(all, func(a, b redis.Z) int {
		if zLess(a, b) {
			return -1
		}
		return 1
	})
	return s.endRooms(ctx, all[:min(int64(len(all)), excess)])
}

// endRooms deletes rooms (members of the index), publishing Leave for
// their online members, their index entries and their members'
// memberships.
func (s *Store) endRooms(ctx context.Context, rooms []redis.Z) error {
	if len(rooms) == 0 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	members := make([]*redis.Cmd, len(rooms))
	now := s.cfg.now().UnixMicro()
	for i, z := range rooms {
		room := z.Member.(string)
		n := s.shardOf(room)
		keys := []string{s.roomKey(room), s.streamKey(n), s.stateKey(n), s.indexKey(n)}
		members[i] = endScript.Eval(ctx, pipe, keys, s.cfg.streamLen, room, now)
		s.bury(ctx, pipe, setRef{roomSet, n, room}, "")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return wrap("end rooms", err)
	}
	pipe = s.rdb.Pipeline()
	for i, z := range rooms {
		ids, err := members[i].StringSlice()
		if err != nil {
			return wrap("end rooms", err)
		}
		s.unlist(ctx, pipe, z.Member.(string), ids)
	}
	if pipe.Len() == 0 {
		return nil
	}
	_, err := pipe.Exec(ctx)
	return wrap("end rooms", err)
}

// unlist queues the removal of room from the membership lists of ids.
func (s *Store) unlist(ctx context.Context, pipe redis.Pipeliner, room string, ids []string) {
	for _, id := range ids {
		pipe.ZRem(ctx, s.inKey(id), inMember(id, room))
	}
}

// trimRooms applies retention to the rooms, after Trim did to the users:
// rooms idle longer end, and the memberships older than it leave the
// others, and the members' lists.
func (s *Store) trimRooms(ctx context.Context, cutoff string) error {
	fail := func(err error) error {
		s.flushErrors.Add(1)
		return wrap("trim rooms", err)
	}
	for k := range s.cfg.keys {
		idx := s.indexKey(k)
		for {
			idle, err := s.rdb.ZRangeByScoreWithScores(ctx, idx, &redis.ZRangeBy{Min: "-inf", Max: cutoff, Count: 1000}).Result()
			if err == nil && len(idle) > 0 {
				err = s.endRooms(ctx, idle)
			}
			if err != nil {
				return fail(err)
			}
			if len(idle) == 0 {
				break
			}
		}
		active, err := s.rdb.ZRange(ctx, idx, 0, -1).Result()
		if err != nil {
			return fail(err)
		}
		for len(active) > 0 {
			batch := active[:min(len(active), 1000)]
			pipe := s.rdb.Pipeline()
			old := make([]*redis.StringSliceCmd, len(batch))
			for i, room := range batch {
				old[i] = pipe.ZRangeByScore(ctx, s.roomKey(room), &redis.ZRangeBy{Min: "-inf", Max: cutoff, Count: 1000})
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return fail(err)
			}
			pipe = s.rdb.Pipeline()
			var next []string // rooms that may hold more
			for i, room := range batch {
				ids := old[i].Val()
				if len(ids) == 0 {
					continue
				}
				s.unlist(ctx, pipe, room, ids)
				s.remove(ctx, pipe, setRef{roomSet, s.shardOf(room), room}, ids...)
				if len(ids) == 1000 {
					next = append(next, room)
				}
			}
			if pipe.Len() > 0 {
				if _, err := pipe.Exec(ctx); err != nil {
					return fail(err)
				}
			}
			active = append(next, active[len(batch):]...)
		}
	}
	return nil
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// int64Cmd reads a script's integer reply as an IntCmd's.
type int64Cmd struct{ *redis.Cmd }

func (c int64Cmd) Result() (int64, error) { return c.Int64() }
