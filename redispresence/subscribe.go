package redispresence

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/onlinenow/presence"
	"github.com/redis/go-redis/v9"
)

// Subscribe returns a subscription to the fleet's events from now on,
// within scopes (none: every event; see presence.Scope), with a channel
// buffer of buffer events (buffer <= 0 selects 1024), or
// presence.ErrNoEvents for a Store made without WithEvents. The first
// starts the Store's reader of the streams, which reads where each stream
// ends now (within ctx and the timeout: it may fail); Close of the Store
// closes every subscription.
//
// Every subscription of every Store sees each event once. Events of one
// shard's stream arrive in the order Redis made them: a user's Online and
// Offline, and a member's Join and Leave in one room, in order; the events
// of one read of all the streams are merged by time, a user's Online
// before a Join at the same time and a Leave before an Offline. Event.Seq
// numbers the events this Store delivered. A subscription that falls
// behind loses events, counted by Dropped, and its next event is an
// Overflow; an Overflow also reports events lost to the Store: read from a
// stream after Redis trimmed them (WithStreamLen), or lost by a failover.
func (s *Store) Subscribe(ctx context.Context, buffer int, scopes ...presence.Scope) (*presence.Subscription, error) {
	e := s.ev
	if e == nil {
		return nil, presence.ErrNoEvents
	}
	if err := e.startReader(ctx); err != nil {
		return nil, err
	}
	return e.hub.Subscribe(buffer, scopes...), nil
}

// startReader starts the reader once it has read where every stream ends.
func (e *events) startReader(ctx context.Context) error {
	e.startMu.Lock()
	defer e.startMu.Unlock()
	if e.reading || e.s.ctx.Err() != nil {
		return nil
	}
	k := e.s.cfg.keys
	ids := make([]string, k)
	seqs := make([]int64, k) // the last sequence number read; -1: unknown
	for n := range k {
		ids[n], seqs[n] = "", -1
	}
	if err := bounded0(e.s, ctx, func(ctx context.Context) error { return e.readOnce(ctx, ids, seqs) }); err != nil {
		return err
	}
	e.reading = true
	e.wg.Add(1)
	go e.reader(ids, seqs)
	return nil
}

// reader polls every shard's stream from where it last read, until the
// Store closes. After a failed read it goes on from the same IDs, which
// resumes where it was if Redis kept the events, and reports a gap in the
// sequence numbers as an Overflow if not.
func (e *events) reader(ids []string, seqs []int64) {
	defer e.wg.Done()
	s := e.s
	t := time.NewTicker(s.cfg.poll)
	defer t.Stop()
	defer e.hub.Close()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.timeout)
		if err := e.readOnce(ctx, ids, seqs); err != nil && s.ctx.Err() == nil {
			s.report(wrap("read events", err))
		}
		cancel()
	}
}

// readOnce reads every stream once: the end of those not started yet, the
// events after the last read of the others, which it publishes merged.
func (e *events) readOnce(ctx context.Context, ids []string, seqs []int64) error {
	s := e.s
	pipe := s.rdb.Pipeline()
	starts := make([]*redis.XMessageSliceCmd, len(ids))
	reads := make([]*redis.XStreamSliceCmd, len(ids))
	for n, id := range ids {
		if id == "" {
			starts[n] = pipe.XRevRangeN(ctx, e.s.streamKey(n), "+", "-", 1)
		} else {
			reads[n] = pipe.XRead(ctx, &redis.XReadArgs{Streams: []string{e.s.streamKey(n), id}, Count: 1024, Block: -1})
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	lost := false
	streams := make([][]presence.Event, len(ids))
	for n := range ids {
		if starts[n] != nil {
			ids[n], seqs[n] = "0-0", 0
			if m := starts[n].Val(); len(m) > 0 {
				ids[n], seqs[n] = m[0].ID, seqOf(m[0])
			}
			continue
		}
		for _, st := range reads[n].Val() {
			for _, m := range st.Messages {
				q := seqOf(m)
				lost = lost || (seqs[n] >= 0 && q != seqs[n]+1)
				ids[n], seqs[n] = m.ID, q
				e.read.Add(1)
				if ev, ok := e.eventOf(m); ok {
					streams[n] = append(streams[n], ev)
				}
			}
		}
	}
	if lost {
		e.hub.Lost()
	}
	mergeStreams(streams, e.hub.Publish)
	return nil
}

// mergeStreams calls publish with the events of every stream, each
// stream's in its order, merged by time: of the heads of the streams, the
// earliest goes first, and at one time Online before Join before Leave
// before Offline. A user's events are in its shard's stream and a
// member's in its room's, so this puts a user's Online before its first
// Join and its last Leave before its Offline when one read holds both.
func mergeStreams(streams [][]presence.Event, publish func(presence.Event)) {
	rank := func(k presence.EventKind) int {
		switch k {
		case presence.Online:
			return 0
		case presence.Join:
			return 1
		case presence.Leave:
			return 2
		}
		return 3
	}
	for {
		best := -1
		for n, evs := range streams {
			if len(evs) == 0 {
				continue
			}
			if best < 0 {
				best = n
				continue
			}
			a, b := evs[0], streams[best][0]
			if c := a.At.Compare(b.At); c < 0 || c == 0 && rank(a.Kind) < rank(b.Kind) {
				best = n
			}
		}
		if best < 0 {
			return
		}
		publish(streams[best][0])
		streams[best] = streams[best][1:]
	}
}

func seqOf(m redis.XMessage) int64 {
	q, _ := m.Values["q"].(string)
	n, err := strconv.ParseInt(q, 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// eventOf decodes a stream entry. The time of an Offline or a Leave the
// sweeper found is when the user's window ended.
func (e *events) eventOf(m redis.XMessage) (presence.Event, bool) {
	str := func(k string) string { v, _ := m.Values[k].(string); return v }
	at, err := strconv.ParseInt(str("at"), 10, 64)
	if err != nil {
		return presence.Event{}, false
	}
	ev := presence.Event{ID: str("id"), Room: str("r")}
	switch str("k") {
	case "online":
		ev.Kind = presence.Online
	case "join":
		ev.Kind = presence.Join
	case "offline":
		ev.Kind, at = presence.Offline, at+e.window
	case "leave":
		ev.Kind, at = presence.Leave, at+e.window
	case "left":
		ev.Kind = presence.Leave
	case "gone":
		ev.Kind = presence.Offline
	case "update":
		ev.Kind = presence.Update
	default:
		return presence.Event{}, false
	}
	if d, ok := m.Values["d"].(string); ok {
		if ev.Data, ok = decodeData(d); !ok {
			return presence.Event{}, false
		}
	}
	ev.At = time.UnixMicro(at).UTC()
	return ev, true
}
