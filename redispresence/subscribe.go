package redispresence

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/onlinenow/presence"
	"github.com/redis/go-redis/v9"
)

// Subscription receives the fleet's events on one Store, from
// [Store.Subscribe]. It is safe for concurrent use.
//
// Every subscription of every Store sees each event once. Events of one
// shard's stream arrive in the order Redis made them: a user's Online and
// Offline, and a member's Join and Leave in one room, in order. Event.Seq
// numbers the events of one stream. Its channel has a fixed buffer:
// reading never waits for a subscriber, so one that falls behind loses
// events, counted by Dropped, and the next event it gets is an Overflow. An
// Overflow also reports events lost to the Store: read from a stream after
// Redis trimmed them (WithStreamLen), or lost by a failover.
type Subscription struct {
	e       *events
	ch      chan presence.Event
	dropped atomic.Uint64
	owed    bool // guarded by e.mu: an Overflow goes first
	closed  bool
}

// Subscribe returns a subscription to the fleet's events from now on, with
// a channel buffer of buffer events (buffer <= 0 selects 1024). The first
// starts the Store's reader of the streams; Close of the Store closes every
// subscription.
func (s *Store) Subscribe(buffer int) (*Subscription, error) {
	e := s.ev
	if e == nil {
		return nil, ErrNoEvents
	}
	if buffer <= 0 {
		buffer = 1024
	}
	sub := &Subscription{e: e, ch: make(chan presence.Event, buffer)}
	e.mu.Lock()
	if s.ctx.Err() != nil {
		sub.closed = true
		close(sub.ch)
	} else {
		e.subs = append(e.subs, sub)
	}
	e.mu.Unlock()
	e.reading.Do(func() {
		ready := make(chan struct{})
		e.wg.Add(1)
		go e.reader(ready)
		<-ready
	})
	return sub, nil
}

// Events returns the channel the subscription's events arrive on; it is
// closed by Close and by the Store's Close.
func (sub *Subscription) Events() <-chan presence.Event { return sub.ch }

// Dropped returns how many events the subscription lost by falling behind.
func (sub *Subscription) Dropped() uint64 { return sub.dropped.Load() }

// Close ends the subscription and closes its channel. It is idempotent.
func (sub *Subscription) Close() {
	e := sub.e
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, x := range e.subs {
		if x == sub {
			e.subs = append(e.subs[:i:i], e.subs[i+1:]...)
		}
	}
	if !sub.closed {
		sub.closed = true
		close(sub.ch)
	}
}

// deliver sends ev to every subscription; lost says events were lost
// before it. Called with e.mu held.
func (e *events) deliver(ev presence.Event, lost bool) {
	for _, sub := range e.subs {
		if lost {
			sub.owed = true
		}
		if sub.owed {
			select {
			case sub.ch <- presence.Event{Kind: presence.Overflow, At: ev.At, Seq: ev.Seq - 1}:
				sub.owed = false
			default:
				sub.dropped.Add(1)
				continue
			}
		}
		select {
		case sub.ch <- ev:
		default:
			sub.dropped.Add(1)
			sub.owed = true
		}
	}
}

// reader polls every shard's stream from where it last read, until the
// Store closes. It starts at each stream's last event (closing ready once
// it knows them), so that subscribers see events from now on; after a
// failed read it goes on from the same IDs, which resumes where it was if
// Redis kept the events, and reports a gap in the sequence numbers as an
// Overflow if not.
func (e *events) reader(ready chan struct{}) {
	defer e.wg.Done()
	s := e.s
	k := s.cfg.keys
	ids := make([]string, k)
	seqs := make([]int64, k) // the last sequence number read; -1: unknown
	for n := range k {
		ids[n], seqs[n] = "", -1
	}
	t := time.NewTicker(s.cfg.poll)
	defer t.Stop()
	defer e.closeAll()
	for first := true; ; first = false {
		if !first {
			select {
			case <-s.ctx.Done():
				return
			case <-t.C:
			}
		}
		e.readOnce(ids, seqs)
		if first {
			close(ready)
		}
	}
}

// readOnce reads every stream once: the start of those not started yet,
// the events after the last read of the others.
func (e *events) readOnce(ids []string, seqs []int64) {
	s := e.s
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.timeout)
	defer cancel()
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
		if s.ctx.Err() == nil {
			s.report(wrap("read events", err))
		}
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
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
				lost := seqs[n] >= 0 && q != seqs[n]+1
				ids[n], seqs[n] = m.ID, q
				e.read.Add(1)
				if ev, ok := e.eventOf(m, q); ok {
					e.deliver(ev, lost)
				}
			}
		}
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
func (e *events) eventOf(m redis.XMessage, q int64) (presence.Event, bool) {
	str := func(k string) string { v, _ := m.Values[k].(string); return v }
	at, err := strconv.ParseInt(str("at"), 10, 64)
	if err != nil {
		return presence.Event{}, false
	}
	ev := presence.Event{ID: str("id"), Room: str("r"), Seq: uint64(q)}
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
	default:
		return presence.Event{}, false
	}
	ev.At = time.UnixMicro(at).UTC()
	return ev, true
}

// closeAll closes every subscription, when the Store closes.
func (e *events) closeAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, sub := range e.subs {
		if !sub.closed {
			sub.closed = true
			close(sub.ch)
		}
	}
	e.subs = nil
}
