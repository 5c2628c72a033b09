package main

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/onlinenow/presence"
)

// The events run: what change events cost the touches, and how fast a
// burst of them arrives. The engine is filled with the users, seen now,
// then touched from -workers goroutines for -duration with no subscriber, and
// again with eventSubscribers subscribers draining their events: touches
// of online users publish nothing, and must not pay for the subscribers.
// Then the clock jumps past the online window, and the sweeper finds every
// user offline at once: one Offline event per user to each subscriber,
// delivered at events/s (from the first to the last), through the
// default buffer.

const eventSubscribers = 4

// eventsResult is the events run's figures.
type eventsResult struct {
	Users                 int     `json:"users"`
	Subscribers           int     `json:"subscribers"`
	TouchesPerSec         float64 `json:"touches_per_sec"`
	TouchesPerSecWithSubs float64 `json:"touches_per_sec_with_subscribers"`
	Events                int64   `json:"offline_events_delivered"` // to all subscribers
	EventsPerSec          float64 `json:"offline_events_per_sec"`
	Dropped               uint64  `json:"dropped"`
}

func runEvents(p params) (eventsResult, error) {
	r := eventsResult{Users: p.Users, Subscribers: eventSubscribers}
	var ahead atomic.Int64 // the clock's lead over real time, to jump it
	e := presence.New(presence.WithClock(func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }),
		presence.WithExpectedUsers(p.Users))
	defer e.Close()
	k := newKeys(p.Users, p.Dist, p.Skew, p.Seed)
	for i := range p.Users {
		e.Touch(k.id(i))
	}

	touch := func() (float64, error) {
		var ops atomic.Int64
		start := time.Now()
		deadline := start.Add(p.Duration)
		err := parallel(p.Workers, func(w int) error {
			k := newKeys(p.Users, p.Dist, p.Skew, p.Seed+uint64(w)+1)
			n := int64(0)
			for ; n&255 != 0 || time.Now().Before(deadline); n++ {
				e.Touch(k.id(k.next()))
			}
			ops.Add(n)
			return nil
		})
		return float64(ops.Load()) / time.Since(start).Seconds(), err
	}
	var err error
	if r.TouchesPerSec, err = touch(); err != nil {
		return r, err
	}
	subs := make([]*presence.Subscription, eventSubscribers)
	received := make([]atomic.Int64, eventSubscribers)
	var first atomic.Int64 // when the first Offline arrived, ns
	for i := range subs {
		subs[i] = e.Subscribe(0)
		go func() {
			for ev := range subs[i].Events() {
				if ev.Kind == presence.Offline {
					if received[i].Add(1) == 1 {
						first.CompareAndSwap(0, time.Now().UnixNano())
					}
				}
			}
		}()
	}
	if r.TouchesPerSecWithSubs, err = touch(); err != nil {
		return r, err
	}
	for i := range received {
		if n := received[i].Load(); n != 0 {
			return r, fmt.Errorf("subscriber %d received %d Offline events while every user was online", i, n)
		}
	}

	start := time.Now()
	ahead.Store(int64(10 * time.Minute)) // past the 5-minute online window
	for done := false; !done; {
		if time.Since(start) > time.Minute {
			return r, fmt.Errorf("the offline burst was not delivered within a minute")
		}
		time.Sleep(time.Millisecond)
		done = true
		for i, s := range subs {
			done = done && received[i].Load()+int64(s.Dropped()) >= int64(p.Users)
		}
	}
	elapsed := time.Since(time.Unix(0, first.Load()))
	for i, s := range subs {
		r.Events += received[i].Load()
		r.Dropped += s.Dropped()
	}
	r.EventsPerSec = float64(r.Events) / elapsed.Seconds()
	return r, nil
}

func printEvents(w io.Writer, r eventsResult) {
	fmt.Fprintf(w, "\nevents: %d users, Touch from the workers with no subscriber and with %d\n", r.Users, r.Subscribers)
	fmt.Fprintf(w, "%14s %14s %10s %16s %14s %10s\n", "touches/s", "with subs", "slowdown", "offline events", "events/s", "dropped")
	fmt.Fprintf(w, "%14s %14s %10s %16d %14s %10d\n", si(r.TouchesPerSec), si(r.TouchesPerSecWithSubs),
		ratio(r.TouchesPerSec, r.TouchesPerSecWithSubs), r.Events, si(r.EventsPerSec), r.Dropped)
}
