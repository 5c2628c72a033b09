package redispresence

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

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
