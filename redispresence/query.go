package redispresence

import (
	"context"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/onlinenow/presence"
	"github.com/redis/go-redis/v9"
)

// Count returns how many users Redis holds seen within window of now (the
// Store's clock): one ZCOUNT per set, in one pipeline.
func (s *Store) Count(ctx context.Context, window time.Duration) (int, error) {
	return s.count(ctx, s.userKeys, s.since(window))
}

// since is the start of window, now.
func (s *Store) since(window time.Duration) time.Time { return s.cfg.now().Add(-window) }

// Online returns how many users are online now: seen within the online
// window (WithOnlineWindow), which a held user always is. It is a Count.
func (s *Store) Online(ctx context.Context) (int, error) { return s.Count(ctx, s.cfg.window) }

// OnlinePage returns a page of the users online now: Page over the online
// window, each with its connections' data. Once the sweep has passed (each
// flush interval), it lists a user exactly between its Online event and
// its Offline.
func (s *Store) OnlinePage(ctx context.Context, cursor string, limit int) ([]presence.Activity, string, error) {
	return s.Page(ctx, s.cfg.window, cursor, limit)
}

// count sums the members of the sets keys scored t or later.
func (s *Store) count(ctx context.Context, keys []string, t time.Time) (int, error) {
	return bounded(s, ctx, func(ctx context.Context) (int, error) {
		min := strconv.FormatInt(t.UnixMicro(), 10)
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.IntCmd, len(keys))
		for k, key := range keys {
			cmds[k] = pipe.ZCount(ctx, key, min, "+inf")
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, fmt.Errorf("redispresence: count: %w", err)
		}
		n := 0
		for _, c := range cmds {
			n += int(c.Val())
		}
		return n, nil
	})
}

// cursor is a position in a newest-first walk: the (score, member) of the
// last user returned, and the walk it belongs to (walkOf: "" for the
// users', a tag of the room's name for a room's), so that one walk's
// cursor is refused by another.
type cursor struct {
	score  int64
	member string
	walk   string
}

func (c cursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.score, 10) + ":" + c.walk + ":" + c.member))
}

// walkOf tags a walk: "" for the users', the CRC-32C of a room's name in
// hex for the room's.
func walkOf(room string) string {
	if room == "" {
		return ""
	}
	return strconv.FormatUint(uint64(crc32.Checksum([]byte(room), castagnoli)), 16)
}

// maxCursorLen is the longest cursor before base64: an int64's digits, a
// colon, a walk's tag, a colon and an ID.
const maxCursorLen = 20 + 1 + 8 + 1 + presence.MaxIDLen

// errNotCursor is what Page says of any text it did not hand out.
var errNotCursor = fmt.Errorf("redispresence: %w", presence.ErrInvalidCursor)

// parseCursor reads a cursor of the walk walk; "" is the start.
func parseCursor(s, walk string) (cursor, bool, error) {
	if s == "" {
		return cursor{}, false, nil
	}
	// Checked before decoding, so that a long one allocates nothing in
	// proportion to its length.
	if len(s) > base64.RawURLEncoding.EncodedLen(maxCursorLen) {
		return cursor{}, false, errNotCursor
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, false, errNotCursor
	}
	num, rest, ok1 := strings.Cut(string(raw), ":")
	tag, member, ok2 := strings.Cut(rest, ":")
	score, err := strconv.ParseInt(num, 10, 64)
	if !ok1 || !ok2 || err != nil || tag != walk || member == "" || len(member) > presence.MaxIDLen {
		return cursor{}, false, errNotCursor
	}
	return cursor{score, member, walk}, true, nil
}

// Page returns up to limit users seen within window, newest first, after the
// cursor ("" for the first page), and the next page's cursor ("" after the
// last). It asks each set for about twice its share of the page in one
// pipeline, and again, for twice as many, each set all of whose users made
// the page, then merges. Each ask goes on after the last user fetched from
// that set (after the cursor, at first), so a walk never returns an
// untouched user twice or skips one, however the sets change between pages
// or between the asks of one page; a user touched meanwhile may move ahead
// of the walk. A page costs O(log n + k) per set, and O(log T x log n) more
// when T users share the cursor's microsecond (see fetch). limit <= 0 returns
// all the rest, as the engine does.
func (s *Store) Page(ctx context.Context, window time.Duration, cur string, limit int) ([]presence.Activity, string, error) {
	return s.page(ctx, "", s.userKeys, s.since(window), cur, limit)
}

// page walks the sets keys (the users', or room's) as Page describes.
func (s *Store) page(ctx context.Context, room string, keys []string, t time.Time, cur string, limit int) ([]presence.Activity, string, error) {
	return bounded2(s, ctx, func(ctx context.Context) ([]presence.Activity, string, error) {
		after, has, err := parseCursor(cur, walkOf(room))
		if err != nil {
			return nil, "", err
		}
		if limit <= 0 {
			limit = math.MaxInt32 // all, as the engine's Page
		}
		lo := strconv.FormatInt(t.UnixMicro(), 10)
		// Ask each set for a fair share of the page at first, not a whole page
		// (16 sets x 51 users to return 50 was most of the work). The merge is
		// exact once every set that may hold more still has a fetched user below
		// the cut; a set whose fetched users all made the cut is asked again, for
		// twice as many, until that holds.
		want := limit + 1 // one more, to know whether a next page exists
		lists := make([][]redis.Z, len(keys))
		more := make([]bool, len(keys)) // the set may hold users not fetched yet
		tied := make([]bool, len(keys)) // its last ask read only users tied with the cursor
		batch := make([]int64, len(keys))
		todo := make([]int, len(keys))
		for k := range todo {
			todo[k] = k
			batch[k] = int64(min(want, 2*((want+len(keys)-1)/len(keys))+2))
		}
		var heads []int
		for round := 0; ; round++ {
			if len(todo) > 0 {
				if err := s.fetch(ctx, keys, todo, lo, after, has, int64(want), lists, batch, more, tied); err != nil {
					return nil, "", fmt.Errorf("redispresence: page: %w", err)
				}
			}
			// Merge newest first (score, then member, both descending) up to want.
			heads = make([]int, len(lists))
			taken, lastSet := 0, -1 // the set of the cut's last user
			for ; taken < want; taken++ {
				best := -1
				for k, l := range lists {
					if heads[k] < len(l) && (best < 0 || zLess(lists[best][heads[best]], l[heads[k]])) {
						best = k
					}
				}
				if best < 0 {
					break
				}
				heads[best]++
				lastSet = best
			}
			todo = todo[:0]
			for k, l := range lists {
				if more[k] && heads[k] == len(l) && !(taken == want && k == lastSet) {
					// All of it made the cut, so it may hold users that belong
					// above the cut's last, unless that last is its own.
					todo = append(todo, k)
				}
			}
			if len(todo) == 0 {
				break
			}
		}
		// The merge above picked want users; return the first limit of them.
		var out []presence.Activity
		pos := make([]int, len(lists))
		for len(out) < limit {
			best := -1
			for k, l := range lists {
				if pos[k] < heads[k] && (best < 0 || zLess(lists[best][pos[best]], l[pos[k]])) {
					best = k
				}
			}
			if best < 0 {
				break
			}
			z := lists[best][pos[best]]
			pos[best]++
			m, _ := z.Member.(string)
			out = append(out, presence.Activity{ID: m, LastSeen: time.UnixMicro(int64(z.Score)).UTC()})
		}
		next := ""
		picked := 0
		for k := range heads {
			picked += heads[k]
		}
		if picked > limit { // a user beyond this page exists
			last := out[len(out)-1]
			next = cursor{last.LastSeen.UnixMicro(), last.ID, walkOf(room)}.String()
		}
		if err := s.fill(ctx, room, out); err != nil {
			return nil, "", err
		}
		return out, next, nil
	})
}

// fetch asks each set in todo, in one pipeline, for up to batch[k] users
// seen at lo or later, newest first, after the last user in lists[k] (or
// after the page's cursor, for a set not asked yet), and appends them to
// lists[k]. It sets more[k] when the set may hold more, and doubles
// batch[k], up to the page's size, for the next ask.
//
// An ask after a cursor is a range read by score from the cursor's time,
// less the users tied with it that came before it: as cheap as the first
// page's. When those fill a whole ask (many users sharing one microsecond,
// as TouchAt of whole seconds makes them), reading them again on every page would cost O(T) per page,
// so the set's next ask runs pageScript instead, which skips them in
// O(log T) (through a script, a read of 16 sets took 40% longer).
func (s *Store) fetch(ctx context.Context, keys []string, todo []int, lo string, after cursor, has bool, want int64, lists [][]redis.Z, batch []int64, more, tied []bool) error {
	type ask struct {
		c      cursor
		has    bool
		script *redis.Cmd
		plain  *redis.ZSliceCmd
	}
	asks := make([]ask, len(todo))
	run := func(eval func(context.Context, redis.Scripter, []string, ...any) *redis.Cmd) error {
		pipe := s.rdb.Pipeline()
		for i, k := range todo {
			asks[i] = ask{c: after, has: has}
			a := &asks[i]
			if l := lists[k]; len(l) > 0 {
				a.c, a.has = cursor{score: int64(l[len(l)-1].Score), member: l[len(l)-1].Member.(string)}, true
			}
			switch {
			case a.has && tied[k]:
				a.script = eval(ctx, pipe, []string{keys[k]}, lo, batch[k], a.c.score, a.c.member)
			default:
				hi := "+inf"
				if a.has {
					hi = strconv.FormatInt(a.c.score, 10) // inclusive: the ties before the cursor are passed over below
				}
				a.plain = pipe.ZRevRangeByScoreWithScores(ctx, keys[k], &redis.ZRangeBy{Min: lo, Max: hi, Count: batch[k]})
			}
		}
		_, err := pipe.Exec(ctx)
		if errors.Is(err, redis.Nil) {
			err = nil
		}
		return err
	}
	err := run(pageScript.EvalSha)
	if redis.HasErrorPrefix(err, "NOSCRIPT") { // not cached (a restart, SCRIPT FLUSH): send it whole
		err = run(pageScript.Eval)
	}
	if err != nil {
		return err
	}
	for i, k := range todo {
		a := asks[i]
		var zs []redis.Z
		if a.script != nil {
			if zs, err = scriptZ(a.script); err != nil {
				return err
			}
		} else {
			zs = a.plain.Val()
		}
		kept := 0
		for _, z := range zs {
			m, _ := z.Member.(string)
			if !a.has || int64(z.Score) < a.c.score || m < a.c.member {
				lists[k] = append(lists[k], z)
				kept++
			}
		}
		more[k] = int64(len(zs)) == batch[k]
		tied[k] = more[k] && kept == 0
		batch[k] = min(2*batch[k], want)
	}
	return nil
}

// scriptZ reads pageScript's reply: members and scores, alternating.
func scriptZ(cmd *redis.Cmd) ([]redis.Z, error) {
	flat, err := cmd.StringSlice()
	if err != nil || len(flat)%2 != 0 {
		return nil, fmt.Errorf("page script: %v (%d strings)", err, len(flat))
	}
	zs := make([]redis.Z, 0, len(flat)/2)
	for j := 0; j < len(flat); j += 2 {
		score, err := strconv.ParseFloat(flat[j+1], 64)
		if err != nil {
			return nil, fmt.Errorf("page script: score %q", flat[j+1])
		}
		zs = append(zs, redis.Z{Member: flat[j], Score: score})
	}
	return zs, nil
}

// pageScript returns up to ARGV[2] members of the set KEYS[1] with their
// scores (a flat list), newest first, scored ARGV[1] or more, and after the
// member ARGV[4] scored ARGV[3] when those are given, whether or not that
// member is still there. Members of one score come in descending byte order
// (ZRANGE REV), so the place after the cursor's member among T tied with it
// is found by a binary search over ranks: O(log T) range reads of one
// member. Members are compared byte by byte, not with Lua's <, which follows
// the server's locale.
var pageScript = redis.NewScript(pageLua)

//go:embed scripts/page.lua
var pageLua string

// zLess orders two set members oldest first (score, then member).
func zLess(a, b redis.Z) bool {
	if a.Score != b.Score {
		return a.Score < b.Score
	}
	am, _ := a.Member.(string)
	bm, _ := b.Member.(string)
	return am < bm
}

// fill sets Meta, Data and Held in the activities of users (or members
// of room), in one pipeline: a member with an open connection anywhere in
// the fleet is held.
func (s *Store) fill(ctx context.Context, room string, as []presence.Activity) error {
	if len(as) == 0 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	metas := make([]*redis.StringCmd, len(as))
	conns := make([]*redis.MapStringStringCmd, len(as))
	for i, a := range as {
		metas[i] = pipe.HGet(ctx, s.metaKey(s.shardOf(a.ID)), a.ID)
		conns[i] = pipe.HGetAll(ctx, s.connsKey(room, a.ID))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("redispresence: meta: %w", err)
	}
	for i := range as {
		as[i].Meta = metas[i].Val()
		as[i].Data = connsOf(conns[i].Val())
	}
	s.markHeld(room, as)
	return nil
}

// Get returns one user's activity from Redis, or false if unknown.
func (s *Store) Get(ctx context.Context, id string) (presence.Activity, bool, error) {
	return s.get(ctx, "", s.userKeys[s.shardOf(id)], id)
}

// markHeld sets Held in the activities of the users (or members of room)
// this Store holds. Holds of other Stores are not known here: their users
// are seen at their last flush.
func (s *Store) markHeld(room string, as []presence.Activity) {
	s.heldMu.Lock()
	defer s.heldMu.Unlock()
	for i := range as {
		as[i].Held = as[i].Data != nil || s.held[entryKey{room, as[i].ID}] != nil
	}
}

// get reads id's score in the set key (the users', or room's), and its
// meta.
func (s *Store) get(ctx context.Context, room, key, id string) (presence.Activity, bool, error) {
	return bounded2(s, ctx, func(ctx context.Context) (presence.Activity, bool, error) {
		pipe := s.rdb.Pipeline()
		score := pipe.ZScore(ctx, key, id)
		meta := pipe.HGet(ctx, s.metaKey(s.shardOf(id)), id)
		conns := pipe.HGetAll(ctx, s.connsKey(room, id))
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return presence.Activity{}, false, fmt.Errorf("redispresence: get: %w", err)
		}
		if errors.Is(score.Err(), redis.Nil) {
			return presence.Activity{}, false, nil
		}
		a := []presence.Activity{{ID: id, LastSeen: time.UnixMicro(int64(score.Val())).UTC(), Meta: meta.Val(), Data: connsOf(conns.Val())}}
		s.markHeld(room, a)
		return a[0], true, nil
	})
}
