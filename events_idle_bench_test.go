//go:build unix

package presence_test

import (
	"runtime"
	"runtime/debug"
	"syscall"
	"testing"
	"time"

	"github.com/onlinenow/presence"
)

// BenchmarkHeldIdle: 1M users held (connections open, nothing else
// happening) cost the process's CPU per wall second, in percent of one
// core, as the sweeper ticks (each op is one tick of 100 ms at
// WithResolution(100ms), ten times the default's ticks). Holds are not
// walked per tick: held users sit past every edge. Run with -benchtime 50x.
func BenchmarkHeldIdle(b *testing.B) {
	ids := userIDs()
	e := presence.New(presence.WithResolution(100 * time.Millisecond))
	defer e.Close()
	releases := make([]func(), len(ids))
	for k, id := range ids {
		releases[k] = e.Hold(id)
	}
	if e.Online() != len(ids) {
		b.Fatalf("%d online of %d held", e.Online(), len(ids))
	}
	measureIdle(b)
	for _, r := range releases {
		r()
	}
}

// measureIdle reports the process's CPU per wall second, in percent of one
// core, over b.N sleeps of 100 ms, after settling: it first collects and
// returns the filling's garbage, whose background sweeping and scavenging
// would count as the idle engine's.
func measureIdle(b *testing.B) {
	runtime.GC()
	debug.FreeOSMemory()
	time.Sleep(time.Second)
	b.ResetTimer()
	cpu0, wall0 := cpuTime(), time.Now()
	for range b.N {
		time.Sleep(100 * time.Millisecond)
	}
	cpu, wall := cpuTime()-cpu0, time.Since(wall0)
	b.StopTimer()
	b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "%core")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRoomsIdle: 200,000 rooms with a member online in each and
// nothing happening cost the process's CPU per wall second, in percent of
// one core, as the sweeper ticks (each op one tick of 100 ms at
// WithResolution(100ms), ten times the default's ticks), with a
// subscriber. The sweep visits a room only once a member may have gone
// offline. Run with -benchtime 50x.
func BenchmarkRoomsIdle(b *testing.B) {
	const rooms = 200_000
	ids := userIDs()
	e := presence.New(presence.WithResolution(100 * time.Millisecond))
	defer e.Close()
	sub := e.Subscribe(0)
	for k := range rooms {
		e.TouchIn(ids[k], ids[k]) // a room of its own per user
	}
	for range sub.Events() {
		if len(sub.Events()) == 0 {
			break
		}
	}
	if n := len(e.Rooms(time.Minute, 0)); n != rooms {
		b.Fatalf("%d rooms active of %d", n, rooms)
	}
	measureIdle(b)
}
