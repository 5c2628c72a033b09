package redispresence

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Flush sends every buffered change to Redis now, in one pipeline (after
// the connections' writes still queued), and returns its error. Users and
// memberships flushed and then idle for a few intervals leave the buffer.
func (s *Store) Flush(ctx context.Context) error {
	if err := s.flushConns(ctx); err != nil {
		return err
	}
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.touchHeld()
	type change struct {
		p    *pending
		ns   int64
		meta *string
	}
	var changes []change
	byKey := map[setRef][]redis.Z{} // by sorted set: the users', a room's, a user's rooms, the index
	metas := make([][]any, s.cfg.keys)
	roomTimes := map[string]int64{} // each room's newest time in this flush, for the index
	var inIDs []string              // the users whose room lists are written
	idleBefore := s.cfg.now().Add(-3 * s.cfg.interval).UnixNano()
	s.buf.Range(func(ek entryKey, p *pending) bool {
		ns, sent := p.ns.Load(), p.sent.Load()
		meta, metaSent := p.meta.Load(), p.metaSent.Load()
		if ns == deadNS {
			return true
		}
		if ns == sent && meta == metaSent {
			// Clean: let idle entries go, unless a touch comes in first.
			if ns < idleBefore && p.ns.CompareAndSwap(ns, deadNS) {
				removed := false
				s.buf.Compute(ek, func(old *pending, loaded bool) (*pending, bool) {
					removed = loaded && old == p
					return old, !loaded || removed // never store a nil; keep a newer entry
				})
				if removed {
					s.n.Add(-1)
				}
			}
			return true
		}
		if us := float64(ns / 1000); ns != sent && ek.room == "" {
			key := setRef{kind: usersSet, n: s.shardOf(ek.id)}
			byKey[key] = append(byKey[key], redis.Z{Score: us, Member: ek.id})
		} else if ns != sent {
			key, in := setRef{roomSet, s.shardOf(ek.room), ek.room}, setRef{kind: inSet, n: s.shardOf(ek.id)}
			byKey[key] = append(byKey[key], redis.Z{Score: us, Member: ek.id})
			if sent == neverSent {
				// The membership list is written when the entry is new (a
				// join, or a touch after idling out of the buffer), not at
				// every flush: it names the rooms; their times are the
				// rooms' own.
				inIDs = append(inIDs, ek.id)
				byKey[in] = append(byKey[in], redis.Z{Member: inMember(ek.id, ek.room)})
			}
			roomTimes[ek.room] = max(roomTimes[ek.room], ns/1000)
		}
		if meta != metaSent && meta != nil {
			k := s.shardOf(ek.id)
			metas[k] = append(metas[k], ek.id, *meta)
		}
		changes = append(changes, change{p, ns, meta})
		return true
	})
	for room, us := range roomTimes {
		key := setRef{kind: indexSet, n: s.shardOf(room)}
		byKey[key] = append(byKey[key], redis.Z{Score: float64(us), Member: room})
	}
	resent := 0
	all := byKey // this flush's own times, and the resent ones
	if s.resend.Swap(false) {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
		gone, err := s.buried(rctx)
		cancel()
		if err != nil {
			s.flushErrors.Add(1)
			s.resend.Store(true)
			return fmt.Errorf("redispresence: flush under %s: %w", s.cfg.prefix, err)
		}
		all = make(map[setRef][]redis.Z, len(byKey))
		for key, zs := range byKey {
			all[key] = slices.Clip(zs) // appends below copy, not write into byKey's arrays
		}
		for i, batch := range []map[setRef][]redis.Z{s.last, s.prev} {
			if s.batchAt[i] < s.cfg.now().Add(-goneFor).UnixMicro() {
				continue // older than the tombstones: not lost by a failover now
			}
			for key, zs := range batch {
				// A newer time of the same member in the batch wins anyway (GT).
				for _, z := range zs {
					if alive(gone, key, z) {
						all[key] = append(all[key], z)
					}
				}
			}
		}
		for key, zs := range all {
			resent += len(zs) - len(byKey[key])
		}
	}
	if len(changes) == 0 && resent == 0 {
		return nil
	}
	start := time.Now()
	defer func() {
		s.flushCalls.Add(1)
		s.flushNanos.Add(int64(time.Since(start)))
	}()
	size := 0
	for _, zs := range all {
		size += len(zs)
	}
	// The deadline grows with the batch, 10µs a member (a Redis core
	// writes one in about 3): a backlog after an outage is larger than one
	// interval's, and a flush that always timed out would never send it.
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout+time.Duration(size)*10*time.Microsecond)
	defer cancel()
	pipe := s.rdb.Pipeline()
	members := 0
	var newRooms []*redis.IntCmd // ZADDs to the room index: how many rooms they added
	var scripted [][]any         // with events: by shard, what the publish script writes
	var roomRecords [][]any      // the same of the rooms', which go after the users'
	if s.ev != nil {
		scripted, roomRecords = make([][]any, s.cfg.keys), make([][]any, s.cfg.keys)
	}
	for ref, zs := range all {
		if scripted != nil && (ref.kind == usersSet || ref.kind == roomSet) {
			// The script writes the users' and rooms' sets and publishes
			// who came online. It comes after the index's ZADD of its
			// shard in the pipeline (both go to the shard's node in
			// order), so that a sweep finds the rooms it wrote to.
			to := &scripted[ref.n]
			if ref.kind == roomSet {
				to = &roomRecords[ref.n]
			}
			for _, z := range zs {
				*to = append(*to, ref.name, z.Member, int64(z.Score))
			}
			members += len(zs)
			continue
		}
		key := s.keyOf(ref)
		for len(zs) > 0 {
			batch := zs[:min(len(zs), 512)]
			zs = zs[len(batch):]
			cmd := pipe.ZAddGT(ctx, key, batch...)
			if ref.kind == indexSet {
				newRooms = append(newRooms, cmd)
			}
			members += len(batch)
		}
	}
	// Every shard's users before any room: a reader between two scripts
	// sees a user's Online before its Join.
	for _, records := range [][][]any{scripted, roomRecords} {
		for n, args := range records {
			for len(args) > 0 {
				batch := args[:min(len(args), 3*512)]
				args = args[len(batch):]
				s.ev.publish(ctx, pipe, n, batch)
			}
		}
	}
	for k, m := range metas {
		if len(m) > 0 {
			pipe.HSet(ctx, s.metaKey(k), m...)
		}
	}
	var cards []*redis.IntCmd
	if s.cfg.perUser > 0 {
		inIDs = slices.Compact(slices.Sorted(slices.Values(inIDs)))
		for _, id := range inIDs {
			lo, hi := inRange(id)
			cards = append(cards, pipe.ZLexCount(ctx, s.inKey(id), lo, hi))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		s.flushErrors.Add(1)
		// Part of the batch may have reached a master about to be
		// replaced: the next flush sends the last good batches again.
		s.resend.Store(true)
		return fmt.Errorf("redispresence: flush of %d entries under %s: %w", len(changes), s.cfg.prefix, err)
	}
	for _, c := range changes {
		// Newer touches made during the flush stay pending: sent only
		// moves up to what this flush wrote.
		for cur := c.p.sent.Load(); c.ns > cur && !c.p.sent.CompareAndSwap(cur, c.ns); cur = c.p.sent.Load() {
		}
		c.p.metaSent.Store(c.meta)
	}
	if len(changes) > 0 {
		s.last, s.prev = byKey, s.last
		s.batchAt = [2]int64{s.cfg.now().UnixMicro(), s.batchAt[0]}
	}
	s.sent.Add(uint64(members - resent))
	s.resent.Add(uint64(resent))
	s.flushes.Add(1)
	s.lastFlush.Store(time.Now().UnixNano())
	added := int64(0)
	for _, c := range newRooms {
		added += c.Val()
	}
	return errors.Join(s.capMemberships(ctx, inIDs, cards), s.capRooms(ctx, added))
}

// loop flushes every interval, backing off while flushes fail, and prunes
// every minute when retention is set.
func (s *Store) loop() {
	defer close(s.done)
	wait := s.cfg.interval
	nextPrune := s.cfg.now()
	failed := 0 // flushes failed in a row
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		// s.ctx also cancels a flush in progress when Close is called; Close
		// then flushes again itself.
		if err := s.Flush(s.ctx); err != nil {
			if s.ctx.Err() != nil {
				return
			}
			s.report(err)
			failed++
			wait = min(2*wait, 30*time.Second)
		} else {
			if failed > 0 && s.cfg.log != nil {
				s.cfg.log.Info("redispresence: flushing again", "failed_flushes", failed)
			}
			failed = 0
			wait = s.cfg.interval
			if now := s.cfg.now(); s.cfg.retention > 0 && !now.Before(nextPrune) {
				if _, err := s.Prune(s.ctx, now.Add(-s.cfg.retention)); err != nil && s.ctx.Err() == nil {
					s.report(err)
				}
				nextPrune = now.Add(time.Minute)
			}
		}
		t.Reset(wait)
	}
}

func (s *Store) report(err error) {
	if s.cfg.log != nil {
		s.cfg.log.Error("redispresence: write to Redis failed", "prefix", s.cfg.prefix, "err", err)
	}
	if f := s.cfg.onError; f != nil {
		f(err)
	}
}

// Prune removes every user last seen before t, with its meta, and then
// the memberships (and rooms) idle since before t, and returns how many
// users it removed, as the engine's Prune does. It is idempotent; with
// WithRetention the Store prunes what is older than the retention every
// minute.
func (s *Store) Prune(ctx context.Context, t time.Time) (int, error) {
	return bounded(s, ctx, func(ctx context.Context) (int, error) {
		cutoff := "(" + strconv.FormatInt(t.UnixMicro(), 10)
		removed := 0
		for k := range s.cfg.keys {
			for {
				old, err := s.rdb.ZRangeByScore(ctx, s.key(k), &redis.ZRangeBy{Min: "-inf", Max: cutoff, Count: 1000}).Result()
				if err != nil {
					s.flushErrors.Add(1)
					return removed, fmt.Errorf("redispresence: prune %s: %w", s.key(k), err)
				}
				if len(old) == 0 {
					break
				}
				pipe := s.rdb.Pipeline()
				n := pipe.ZRem(ctx, s.key(k), anys(old)...)
				pipe.HDel(ctx, s.metaKey(k), old...)
				if _, err := pipe.Exec(ctx); err != nil {
					s.flushErrors.Add(1)
					return removed, fmt.Errorf("redispresence: prune %s: %w", s.key(k), err)
				}
				removed += int(n.Val())
				s.pruned.Add(uint64(n.Val()))
			}
		}
		return removed, s.trimRooms(ctx, cutoff)
	})
}
