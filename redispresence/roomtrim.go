package redispresence

import (
	"context"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"
)

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
