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
	"github.com/redis/go-redis/v9"
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
	if !s.acceptID(id) || at.IsZero() {
		return
	}
	s.touches.Inc()
	ns := at.UnixNano()
	s.raise(entryKey{id: id}, ns)
	if room == "" {
		s.rejectedRooms.Add(1)
		return
	}
	s.raise(entryKey{room, id}, ns) // an invalid name is refused by insert
}

// Leave ends id's membership of room in Redis and in this Store's buffer;
// id's global time stays. It reports whether id was a member. A touch of
// the membership still buffered on another Store joins it again at that
// Store's next flush, as a touch after a Leave does.
func (s *Store) Leave(ctx context.Context, room, id string) (bool, error) {
	return bounded(s, ctx, func(ctx context.Context) (bool, error) {
		// Under the flush lock: a flush in progress would write the membership
		// back after the ZREM.
		s.flushMu.Lock()
		defer s.flushMu.Unlock()
		buffered := s.drop(entryKey{room, id})
		s.unhold(func(k entryKey) bool { return k == entryKey{room, id} })
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
	})
}

// Forget removes a user from Redis and from the buffer: its time, meta and
// memberships, publishing Offline and Leave (WithEvents) if it was online.
// It walks the buffer for the user's memberships, so it costs
// O(buffer).
func (s *Store) Forget(ctx context.Context, id string) (bool, error) {
	return bounded(s, ctx, func(ctx context.Context) (bool, error) {
		s.flushMu.Lock()
		defer s.flushMu.Unlock()
		buffered := false
		s.unhold(func(k entryKey) bool { return k.id == id })
		s.buf.Range(func(k entryKey, _ *pending) bool {
			if k.id == id {
				buffered = s.drop(k) || buffered
			}
			return true
		})
		rooms, err := s.memberships(ctx, id)
		if err != nil {
			return false, fmt.Errorf("redispresence: forget: %w", err)
		}
		k := s.shardOf(id)
		pipe := s.rdb.Pipeline()
		// Leave first, then Offline: a user's last Leave comes before it.
		for _, room := range rooms {
			s.remove(ctx, pipe, setRef{roomSet, s.shardOf(room), room}, id)
			pipe.ZRem(ctx, s.inKey(id), inMember(id, room))
		}
		n := s.remove(ctx, pipe, setRef{kind: usersSet, n: k}, id)
		pipe.HDel(ctx, s.metaKey(k), id)
		if _, err := pipe.Exec(ctx); err != nil {
			return false, fmt.Errorf("redispresence: forget: %w", err)
		}
		removed, _ := n.Result()
		return buffered || removed > 0, nil
	})
}

// room is a read view of one room in Redis: its members, each with the
// time it was last seen in the room. It is a plain value, safe for
// concurrent use. A room no one is in is empty.
type room struct {
	s    *Store
	name string
	keys []string // the room's one set
}

// Room returns the view of the room called name: Count is one ZCOUNT, Page
// walks the room's set as [Store.Page] walks the users' (each member at
// its time in the room, Meta the user's, and a cursor of another room
// refused), Get one ZSCORE.
func (s *Store) Room(name string) presence.Querier {
	return room{s, name, []string{s.roomKey(name)}}
}

func (r room) Count(ctx context.Context, window time.Duration) (int, error) {
	return r.s.count(ctx, r.keys, r.s.since(window))
}

func (r room) Page(ctx context.Context, window time.Duration, cursor string, limit int) ([]presence.Activity, string, error) {
	return r.s.page(ctx, r.name, r.keys, r.s.since(window), cursor, limit)
}

func (r room) Get(ctx context.Context, id string) (presence.Activity, bool, error) {
	return r.s.get(ctx, r.name, r.keys[0], id)
}

func (r room) Online(ctx context.Context) (int, error) { return r.Count(ctx, r.s.cfg.window) }

func (r room) OnlinePage(ctx context.Context, cursor string, limit int) ([]presence.Activity, string, error) {
	return r.Page(ctx, r.s.cfg.window, cursor, limit)
}

// RoomsOf returns the rooms id is in, most recently active first (ties by
// name), leaving out memberships older than the retention: one read of the
// user's memberships and one ZSCORE per room, so that rooms ended
// meanwhile are left out too.
func (s *Store) RoomsOf(ctx context.Context, id string) ([]string, error) {
	return bounded(s, ctx, func(ctx context.Context) ([]string, error) {
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
	})
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

// Rooms returns the rooms with members seen within window, busiest first
// (ties by name), at most limit of them (limit <= 0: all), as the engine's
// Rooms does. It reads the rooms active since then from the index and
// counts each (one ZCOUNT per room, pipelined): O(rooms active).
func (s *Store) Rooms(ctx context.Context, window time.Duration, limit int) ([]presence.RoomCount, error) {
	return bounded(s, ctx, func(ctx context.Context) ([]presence.RoomCount, error) {
		lo := strconv.FormatInt(s.since(window).UnixMicro(), 10)
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
		return presence.RankRooms(out, limit), nil
	})
}
