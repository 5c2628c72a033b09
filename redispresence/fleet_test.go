package redispresence_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/presencetest"
	"github.com/onlinenow/presence/redispresence"
	"github.com/onlinenow/presence/redispresence/redistest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// outage is how long the fault tests keep Redis away and run their load:
// short in CI, 30s for the full run (go test ./redispresence -run Fault
// -outage 30s).
var outage = flag.Duration("outage", 2*time.Second, "how long fault tests keep Redis down and load running")

// topology is one way to deploy Redis; open starts it for the test and
// returns a client of it.
type topology struct {
	name string
	open func(t *testing.T) redis.UniversalClient
}

var topologies = []topology{
	{"Standalone", func(t *testing.T) redis.UniversalClient { _, rdb := connect(t); return rdb }},
	{"Sentinel", func(t *testing.T) redis.UniversalClient { return failoverClient(t, redistest.StartSentinel(t)) }},
	{"Cluster", func(t *testing.T) redis.UniversalClient { return clusterClient(t, redistest.StartCluster(t)) }},
}

func failoverClient(t *testing.T, sn *redistest.Sentinel) redis.UniversalClient {
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: redistest.MasterName, SentinelAddrs: sn.Addrs(),
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func clusterClient(t *testing.T, cl *redistest.Cluster) redis.UniversalClient {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(),
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// TestContract runs the contract every backend keeps (presencetest)
// against a Store made with events on each topology, each check under its
// own prefix.
func TestContract(t *testing.T) {
	for _, top := range topologies {
		t.Run(top.name, func(t *testing.T) {
			rdb := top.open(t)
			n := 0
			presencetest.Test(t, func(t *testing.T, now func() time.Time) presencetest.Backend {
				n++
				s := newStore(t, rdb, redispresence.WithPrefix(fmt.Sprint("contract", n)), redispresence.WithShards(7),
					redispresence.WithClock(now), redispresence.WithEvents(), redispresence.WithEventPoll(5*time.Millisecond))
				return presencetest.Backend{Backend: s, Sync: s.Flush, Sweep: s.Sweep}
			})
		})
	}
}

// load touches users from a few goroutines, each time newer than the
// last, until stop is closed, and returns each user's newest time (Unix
// microseconds) once they have all ended.
type load struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	touches atomic.Int64
	newest  []map[string]int64
}

func startLoad(s *redispresence.Store, workers, users int) *load {
	l := &load{stop: make(chan struct{}), newest: make([]map[string]int64, workers)}
	start := time.Now()
	for g := range workers {
		l.newest[g] = map[string]int64{}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 23))
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				// Distinct times per worker (g in the low digits): the newest
				// is unambiguous.
				id := fmt.Sprint("u", rng.IntN(users))
				at := start.Add(time.Duration(i*workers+g) * time.Microsecond)
				s.TouchAt(id, at)
				l.newest[g][id] = at.UnixMicro()
				l.touches.Add(1)
				if i%64 == 0 {
					time.Sleep(50 * time.Microsecond) // a paced load, not a spin: the flusher and the servers need the cores
				}
			}
		}()
	}
	return l
}

func (l *load) end() map[string]int64 {
	close(l.stop)
	l.wg.Wait()
	want := map[string]int64{}
	for _, m := range l.newest {
		for id, us := range m {
			want[id] = max(want[id], us)
		}
	}
	return want
}

// checkAll asserts that Redis holds every user at exactly its newest time.
func checkAll(t *testing.T, s *redispresence.Store, want map[string]int64) {
	t.Helper()
	ctx := context.Background()
	lost := 0
	for id, us := range want {
		u, ok, err := s.Get(ctx, id)
		require.NoError(t, err)
		if !ok || u.LastSeen.UnixMicro() != us {
			lost++
		}
	}
	n, err := s.Count(ctx, forever)
	require.NoError(t, err)
	assert.Zero(t, lost, "users not at their newest time, of %d", len(want))
	assert.Equal(t, len(want), n)
}

// flushed waits until a flush succeeds: the store has reconnected.
func flushed(t *testing.T, s *redispresence.Store) {
	t.Helper()
	require.Eventually(t, func() bool { return s.Flush(context.Background()) == nil }, 30*time.Second, 50*time.Millisecond)
}

// TestFailoverResendsWhatTheReplicaMissed makes a write the master
// acknowledged never reach its replica (the replica is stopped and the
// master drops its link to it while the store flushes, then the master is
// killed), as asynchronous replication
// can lose the last writes before a crash. The sentinels promote the
// replica, and the store must write those users again from its last batch.
func TestFailoverResendsWhatTheReplicaMissed(t *testing.T) {
	sn := redistest.StartSentinel(t)
	s := newStore(t, failoverClient(t, sn), redispresence.WithTimeout(500*time.Millisecond))
	ctx := context.Background()
	s.TouchAt("early", t0.Add(-time.Minute))
	require.NoError(t, s.Flush(ctx))
	require.NoError(t, sn.Replica.Signal(syscall.SIGSTOP))
	// The master drops its link to the stopped replica, so that what it
	// acknowledges next never reaches it (not even its socket buffer).
	mc := redis.NewClient(&redis.Options{Addr: sn.Master.Addr()})
	defer mc.Close()
	require.NoError(t, mc.ClientKillByFilter(ctx, "TYPE", "replica").Err())
	for i := range 100 {
		s.TouchAt(fmt.Sprint("acked", i), t0.Add(time.Duration(i)*time.Millisecond))
	}
	require.NoError(t, s.Flush(ctx), "the master acknowledges")
	sn.Master.Stop()
	require.NoError(t, sn.Replica.Signal(syscall.SIGCONT))
	sn.WaitFailover()
	s.TouchAt("after", t0.Add(time.Second))
	flushed(t, s) // a dial to the new master during it asks for a resend
	flushed(t, s)
	st := s.Stats()
	assert.GreaterOrEqual(t, st.Resent, uint64(100), "the last batches went out again")
	want := map[string]int64{"early": t0.Add(-time.Minute).UnixMicro(), "after": t0.Add(time.Second).UnixMicro()}
	for i := range 100 {
		want[fmt.Sprint("acked", i)] = t0.Add(time.Duration(i) * time.Millisecond).UnixMicro()
	}
	checkAll(t, s, want)
}

// TestResendLeavesOutWhatWasRemoved: a Store's resend, after a failed
// flush, sends its last batch again, but not the user another Store forgot
// since, nor the membership another Store ended, nor a room ended: their
// tombstones are newer than the times.
func TestResendLeavesOutWhatWasRemoved(t *testing.T) {
	_, rdb := connect(t)
	ctx := context.Background()
	a := newStore(t, rdb, redispresence.WithTimeout(100*time.Millisecond))
	b := newStore(t, rdb, redispresence.WithMaxRooms(2))
	a.TouchAt("kept", t0)
	a.TouchAt("forgotten", t0)
	a.TouchInAt("doc", "left", t0)
	a.TouchInAt("doc", "stays", t0)
	a.TouchInAt("ended", "member", t0.Add(-time.Second)) // the least recently active room
	require.NoError(t, a.Flush(ctx))
	require.NoError(t, errOf(b.Forget(ctx, "forgotten")))
	left, err := b.Leave(ctx, "doc", "left")
	require.NoError(t, err)
	require.True(t, left)
	b.TouchInAt("new", "stays", t0.Add(time.Second)) // a third room: "ended" ends
	require.NoError(t, b.Flush(ctx))
	rooms, err := b.Rooms(ctx, forever, 0)
	require.NoError(t, err)
	want := []presence.RoomCount{{Room: "doc", Count: 1}, {Room: "new", Count: 1}}
	require.Equal(t, want, rooms)

	// Redis stalls past the read timeout: the flush fails and asks for a resend.
	require.NoError(t, rdb.Do(ctx, "CLIENT", "PAUSE", 1500, "ALL").Err())
	a.TouchAt("later", t0)
	require.Error(t, a.Flush(ctx))
	flushed(t, a)
	assert.NotZero(t, a.Stats().Resent, "the last batch went out again")

	_, ok, err := a.Get(ctx, "kept")
	require.NoError(t, err)
	assert.True(t, ok)
	_, ok, err = a.Get(ctx, "forgotten")
	require.NoError(t, err)
	assert.False(t, ok, "the resend wrote back a forgotten user")
	_, ok, err = a.Room("doc").Get(ctx, "left")
	require.NoError(t, err)
	assert.False(t, ok, "the resend wrote back a membership that left")
	rooms, err = a.Rooms(ctx, forever, 0)
	require.NoError(t, err)
	assert.Equal(t, want, rooms, "the resend brought back an ended room")
	indexed := 0
	for it := rdb.Scan(ctx, 0, "*:rooms:*", 0).Iterator(); it.Next(ctx); {
		if rdb.ZScore(ctx, it.Val(), "ended").Err() == nil {
			indexed++
		}
	}
	assert.Zero(t, indexed, "the resend wrote the ended room back into the index")
}

// TestFaultMasterKilledUnderLoad: SIGKILL the master while goroutines touch
// and the flusher runs every 20ms; the sentinels promote the replica;
// touches never block, and every user ends at its newest time.
func TestFaultMasterKilledUnderLoad(t *testing.T) {
	sn := redistest.StartSentinel(t)
	s, err := redispresence.New(failoverClient(t, sn), redispresence.WithFlushInterval(20*time.Millisecond),
		redispresence.WithTimeout(500*time.Millisecond))
	require.NoError(t, err)
	defer s.Close(context.Background())
	l := startLoad(s, 4, 20_000)
	time.Sleep(*outage / 2) // the load runs: a duration of the test, not a wait for expiry
	sn.KillMaster()
	during := l.touches.Load()
	time.Sleep(*outage / 2)
	assert.Greater(t, l.touches.Load(), during, "touches went on through the failover")
	want := l.end()
	flushed(t, s)
	t.Logf("%d touches, %d users, %+v", l.touches.Load(), len(want), s.Stats())
	checkAll(t, s, want)
}

// TestFaultOutage: Redis hangs (SIGSTOP) for the outage while the load goes
// on; touches never block, the flusher backs off, and once Redis wakes
// every user ends at its newest time.
func TestFaultOutage(t *testing.T) {
	srv, rdb := connect(t)
	s, err := redispresence.New(rdb, redispresence.WithFlushInterval(20*time.Millisecond),
		redispresence.WithTimeout(300*time.Millisecond))
	require.NoError(t, err)
	defer s.Close(context.Background())
	l := startLoad(s, 4, 20_000)
	time.Sleep(200 * time.Millisecond)
	require.NoError(t, srv.Signal(syscall.SIGSTOP))
	before := l.touches.Load()
	time.Sleep(*outage)
	assert.Greater(t, l.touches.Load(), before, "touches went on through the outage")
	require.NoError(t, srv.Signal(syscall.SIGCONT))
	time.Sleep(200 * time.Millisecond)
	want := l.end()
	flushed(t, s)
	st := s.Stats()
	t.Logf("%d touches, %d users, %+v", l.touches.Load(), len(want), st)
	assert.Positive(t, st.FlushErrors, "the outage was seen")
	assert.Zero(t, st.Dropped)
	checkAll(t, s, want)
}

// TestFaultSlotMigration moves 2000 slots (and the sets in them: {3}, {7},
// {10} and {14}) from one cluster node to another while the load runs; the
// client follows the redirections and every user ends at its newest time.
func TestFaultSlotMigration(t *testing.T) {
	cl := redistest.StartCluster(t)
	rdb := clusterClient(t, cl)
	s, err := redispresence.New(rdb, redispresence.WithFlushInterval(20*time.Millisecond))
	require.NoError(t, err)
	defer s.Close(context.Background())
	cc := rdb.(*redis.ClusterClient)
	ctx := context.Background()
	owner := func() string {
		n, err := cc.MasterForKey(ctx, "presence:{14}")
		require.NoError(t, err)
		return n.Options().Addr
	}
	before := owner()
	l := startLoad(s, 4, 20_000)
	time.Sleep(*outage / 2)
	cl.Reshard(0, 1, 2000)
	time.Sleep(*outage / 2)
	want := l.end()
	flushed(t, s)
	assert.NotEqual(t, before, owner(), "the set moved")
	t.Logf("%d touches, %d users, %+v", l.touches.Load(), len(want), s.Stats())
	checkAll(t, s, want)
}

// TestFaultEventsThroughFailover: users arrive on one Store while the
// master is killed and the replica promoted; every subscription of two
// Stores gets each arrival's Online exactly once, unless an Overflow told
// it that events were lost (a new master lacks what it did not replicate;
// the resend then publishes some again).
func TestFaultEventsThroughFailover(t *testing.T) {
	sn := redistest.StartSentinel(t)
	var stores []*redispresence.Store
	var subs []*presence.Subscription
	for range 2 {
		s, err := redispresence.New(failoverClient(t, sn), redispresence.WithFlushInterval(20*time.Millisecond),
			redispresence.WithTimeout(500*time.Millisecond), redispresence.WithOnlineWindow(time.Minute), redispresence.WithEvents(),
			redispresence.WithEventPoll(10*time.Millisecond))
		require.NoError(t, err)
		defer s.Close(context.Background())
		sub, err := s.Subscribe(context.Background(), 1<<16)
		require.NoError(t, err)
		stores, subs = append(stores, s), append(subs, sub)
	}
	stop, arrived := make(chan struct{}), make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				arrived <- n
				return
			case <-time.After(time.Millisecond):
			}
			stores[0].TouchAt(fmt.Sprint("a", n), time.Now())
			n++
		}
	}()
	time.Sleep(*outage / 2) // the load runs: a duration of the test, not a wait for expiry
	sn.KillMaster()
	sn.WaitFailover()
	time.Sleep(*outage / 2)
	close(stop)
	n := <-arrived
	flushed(t, stores[0])
	// Read each subscription up to a marker published after every
	// arrival, then to a second (a poll reads it only after the poll that
	// read the first: so after every event of every stream before it).
	seen, overflow := make([]map[string]int, len(subs)), make([]int, len(subs))
	for _, m := range []string{"marker1", "marker2"} {
		stores[0].TouchAt(m, time.Now())
		flushed(t, stores[0])
		for i, sub := range subs {
			if seen[i] == nil {
				seen[i] = map[string]int{}
			}
			for e := range sub.Events() {
				if e.ID == m {
					break
				}
				switch e.Kind {
				case presence.Overflow:
					overflow[i]++
				case presence.Online:
					seen[i][e.ID]++
				}
			}
		}
	}
	for i := range subs {
		seen, overflow := seen[i], overflow[i]
		missing, twice := 0, 0
		for k := range n {
			switch c := seen[fmt.Sprint("a", k)]; {
			case c == 0:
				missing++
			case c > 1:
				twice++
			}
		}
		t.Logf("subscription %d: %d arrivals, %d missing, %d twice, %d overflows", i, n, missing, twice, overflow)
		if overflow == 0 {
			assert.Zero(t, missing+twice, "subscription %d lost or repeated events without an Overflow", i)
		}
	}
}

// TestFailoverLosingEventsIsAnOverflow: events a subscriber read from the
// master never reach the replica (stopped, its link dropped), the master is
// killed, the replica promoted. The new master's stream lacks them and its
// sequence goes back: the subscriber gets an Overflow, then events again.
func TestFailoverLosingEventsIsAnOverflow(t *testing.T) {
	sn := redistest.StartSentinel(t)
	ctx := context.Background()
	open := func() *redispresence.Store {
		return newStore(t, failoverClient(t, sn), redispresence.WithTimeout(500*time.Millisecond),
			redispresence.WithOnlineWindow(time.Minute), redispresence.WithEvents(), redispresence.WithEventPoll(5*time.Millisecond))
	}
	a, b := open(), open()
	sub, err := b.Subscribe(context.Background(), 0)
	require.NoError(t, err)
	next := func() presence.Event { return recv(t, sub) }
	a.TouchAt("early", time.Now())
	require.NoError(t, a.Flush(ctx))
	assert.Equal(t, "early", next().ID)

	require.NoError(t, sn.Replica.Signal(syscall.SIGSTOP))
	mc := redis.NewClient(&redis.Options{Addr: sn.Master.Addr()})
	defer mc.Close()
	require.NoError(t, mc.ClientKillByFilter(ctx, "TYPE", "replica").Err())
	for i := range 10 {
		a.TouchAt(fmt.Sprint("lost", i), time.Now())
	}
	require.NoError(t, a.Flush(ctx), "the master acknowledges")
	for range 10 {
		assert.Equal(t, presence.Online, next().Kind, "read from the master before it dies")
	}
	sn.Master.Stop()
	require.NoError(t, sn.Replica.Signal(syscall.SIGCONT))
	sn.WaitFailover()
	a.TouchAt("after", time.Now())
	flushed(t, a)
	flushed(t, a)
	var got []presence.Event
	for e := next(); e.ID != "after"; e = next() {
		got = append(got, e)
	}
	require.NotEmpty(t, got)
	assert.Equal(t, presence.Overflow, got[0].Kind, "the lost events are reported before anything else: %v", got)
}
