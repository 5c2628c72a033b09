package main

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKeysDeterministic(t *testing.T) {
	for _, dist := range []string{"uniform", "zipf"} {
		a, b, c := newKeys(1000, dist, 1.1, 7), newKeys(1000, dist, 1.1, 7), newKeys(1000, dist, 1.1, 8)
		same, differ := true, false
		for range 1000 {
			x, y, z := a.next(), b.next(), c.next()
			same = same && x == y
			differ = differ || x != z
			require.True(t, x >= 0 && x < 1000)
		}
		assert.True(t, same, "%s: same seed, same sequence", dist)
		assert.True(t, differ, "%s: another seed, another sequence", dist)
	}
	k := newKeys(10, "uniform", 1.1, 1)
	assert.Equal(t, "u0", k.id(0))
	assert.Equal(t, "u1234567", k.id(1234567))
}

func TestZipfIsSkewed(t *testing.T) {
	k := newKeys(100_000, "zipf", 1.1, 1)
	counts := map[int]int{}
	for range 100_000 {
		counts[k.next()]++
	}
	top := slices.Sorted(func(yield func(int) bool) {
		for _, c := range counts {
			if !yield(c) {
				return
			}
		}
	})
	slices.Reverse(top)
	sum := 0
	for _, c := range top[:100] {
		sum += c
	}
	assert.Greater(t, sum, 30_000, "the 100 most active of 100k users make a large share of requests")
}

func TestHistogramAgainstSortedReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	var h hist
	var ref []time.Duration
	for range 100_000 {
		// Log-uniform from 10ns to 10ms, as latencies spread.
		d := time.Duration(10 * math.Pow(1e6, rng.Float64()))
		h.record(d)
		ref = append(ref, d)
	}
	slices.Sort(ref)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := ref[int(q*float64(len(ref)))-1]
		got := h.quantile(q)
		assert.InEpsilon(t, float64(want), float64(got), 1.0/16, "q=%v want %v got %v", q, want, got)
	}
	var empty hist
	assert.Zero(t, empty.quantile(0.5))
	// Buckets tile the range with no gaps or overlaps.
	for b := range bucketOf(math.MaxUint64) {
		require.Equal(t, b, bucketOf(lowOf(b)), "bucket %d", b)
		require.Equal(t, b, bucketOf(lowOf(b+1)-1), "bucket %d", b)
	}
}

func TestFlagValidation(t *testing.T) {
	good, err := parseFlags(nil, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, 1_000_000, good.Users)
	assert.Equal(t, allPeers, good.Peers)
	for _, args := range [][]string{
		{"-users", "0"},
		{"-users", "-5"},
		{"-dist", "normal"},
		{"-skew", "1"},
		{"-workers", "0"},
		{"-duration", "0s"},
		{"-clock", "fast"},
		{"-peers", "engine,memcached"},
		{"-pipeline", "0"},
		{"-users", "abc"},
		{"-no-such-flag"},
		{"stray"},
	} {
		_, err := parseFlags(args, &bytes.Buffer{})
		assert.Error(t, err, "%q", args)
	}
}

func TestReportFormatting(t *testing.T) {
	var out bytes.Buffer
	printReport(&out, []result{
		{Peer: "engine", LoadPerSec: 1e6, TouchesPerSec: 2e7, NsPerTouch: 100, TouchP50: 50, TouchP99: 900, TouchP999: 5000,
			QueriesPerSec: 5e4, QueryP50: 15000, QueryP99: 100000, BytesPerUser: 120, MovesPerTouch: 0.1,
			SnapshotUsers: 1000, SnapshotBytes: 20000, SnapshotWritePerS: 1e7, SnapshotLoadPerSec: 1e6},
		{Peer: "naive", LoadPerSec: 2e6, TouchesPerSec: 1e6, NsPerTouch: 2000, TouchP50: 200, TouchP99: 1800, TouchP999: 9000,
			QueriesPerSec: 10, QueryP50: 45e6, QueryP99: 9e7, BytesPerUser: 60},
		{Peer: "redis", Skipped: "redis-server not found in PATH"},
	})
	s := out.String()
	for _, want := range []string{"engine", "20.00M", "50ns", "15.0µs", "naive", "20.0x", "3000.0x", "0.5x",
		"redis: skipped: redis-server not found in PATH", "10.0% of touches moved", "19.5 KiB, 20.0 bytes/user"} {
		assert.Contains(t, s, want)
	}
}

// TestSmoke runs the whole program on a tiny workload, Redis included: CI
// installs redis-server, and with PRESENCE_STRICT set its absence fails.
func TestSmoke(t *testing.T) {
	dir := t.TempDir()
	p, err := parseFlags([]string{"-users", "2000", "-duration", "200ms", "-query-every", "100", "-qps", "50",
		"-json", filepath.Join(dir, "out.json")}, &bytes.Buffer{})
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, run(p, &out, nil))
	t.Log("\n" + out.String())
	s := out.String()
	assert.Contains(t, s, "engine")
	assert.Contains(t, s, "naive")
	if strings.Contains(s, "redis: skipped") || strings.Contains(s, "redis-backend: skipped") {
		if os.Getenv("PRESENCE_STRICT") != "" {
			t.Fatalf("PRESENCE_STRICT is set and the redis peer was skipped:\n%s", s)
		}
		t.Log("redis peer skipped: install redis-server to run it")
	}

	assert.Contains(t, s, "rooms: this engine against centrifuge")
	assert.Contains(t, s, "chat: floor ")
	var doc struct {
		Params  params            `json:"params"`
		Machine machine           `json:"machine"`
		Results []json.RawMessage `json:"results"`
		Rooms   []roomsResult     `json:"rooms"`
		Events  eventsResult      `json:"events"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "out.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &doc))
	assert.Equal(t, 2000, doc.Params.Users)
	assert.NotEmpty(t, doc.Machine.GoVersion)
	assert.Len(t, doc.Results, len(allPeers))
	require.Len(t, doc.Rooms, 6, "two workloads: the engine, its floor, centrifuge")
	for _, r := range doc.Rooms {
		assert.Positive(t, r.UpdatesPerSec, "%s %s", r.Workload, r.Peer)
		assert.Positive(t, r.StatsNs)
		assert.Equal(t, map[string]int{"chat": 2000, "stream": 200}[r.Workload], r.Memberships)
	}
	assert.Contains(t, s, "events: 2000 users")
	ev := doc.Events
	assert.Positive(t, ev.TouchesPerSec)
	assert.Positive(t, ev.TouchesPerSecWithSubs)
	assert.Equal(t, int64(eventSubscribers*2000), ev.Events+int64(ev.Dropped), "every user's Offline reached or was lost by each subscriber")
	assert.Positive(t, ev.EventsPerSec)
}

// TestFleetSmoke runs -nodes on a tiny load against a redis-server the
// program starts: every node touched, Redis was written less than once a
// touch... and each node's subscriber got every arrival's Online and Join.
func TestFleetSmoke(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("PRESENCE_STRICT") != "" {
			t.Fatal("PRESENCE_STRICT is set and redis-server is not in PATH")
		}
		t.Skip("install redis-server to run it")
	}
	dir := t.TempDir()
	p, err := parseFlags([]string{"-nodes", "3", "-users", "5000", "-fleet-rooms", "50", "-duration", "1500ms",
		"-fleet-rate", "20000", "-json", filepath.Join(dir, "out.json")}, &bytes.Buffer{})
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, run(p, &out, nil))
	t.Log("\n" + out.String())
	var doc struct {
		Fleet fleetResult `json:"fleet"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "out.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &doc))
	f := doc.Fleet
	require.Len(t, f.TouchesPerNode, 3)
	for _, tps := range f.TouchesPerNode {
		assert.Positive(t, tps)
	}
	assert.InEpsilon(t, 20000, f.Touches, 0.3, "paced at -fleet-rate")
	assert.Positive(t, f.Written)
	assert.Positive(t, f.BytesPerUser)
	assert.Positive(t, f.BytesPerMembership)
	arrivals := 0.0
	for _, tps := range f.TouchesPerNode {
		arrivals += math.Ceil(tps * f.Seconds / arrivalEvery)
	}
	// Each arrival is an Online and a Join, on each of the 3 nodes.
	assert.InEpsilon(t, 2*3*arrivals, float64(f.Events), 0.1)
	assert.Positive(t, f.P50)
	assert.GreaterOrEqual(t, f.P99, f.P50)
}
