package presenceprom_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/presenceprom"
)

// filled returns an engine holding users users, seen a millisecond apart
// up to t0, every tenth also in one of rooms rooms, with a registry of its
// collector and two windows.
func filled(users, rooms int) (*presence.Engine, *prometheus.Registry) {
	e := presence.New(presence.WithClock(func() time.Time { return t0 }), presence.WithExpectedUsers(users))
	for i := range users {
		id, at := fmt.Sprintf("user-%08d", i), t0.Add(-time.Duration(users-i)*time.Millisecond)
		if rooms > 0 && i%10 == 0 {
			e.TouchInAt(fmt.Sprintf("room-%06d", (i/10)%rooms), id, at)
		} else {
			e.TouchAt(id, at)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(presenceprom.NewCollector(e,
		presenceprom.WithWindow("5m", 5*time.Minute), presenceprom.WithWindow("15m", 15*time.Minute)))
	return e, reg
}

// TestScrapeAllocs: a scrape allocates for its metrics, not for the users
// or rooms it counts: the same with 100 users as with 100,000 in 10,000
// rooms.
func TestScrapeAllocs(t *testing.T) {
	allocs := func(users, rooms int) float64 {
		e, reg := filled(users, rooms)
		defer e.Close()
		return testing.AllocsPerRun(20, func() {
			_, err := reg.Gather()
			require.NoError(t, err)
		})
	}
	small, large := allocs(100, 10), allocs(100_000, 10_000)
	assert.Equal(t, small, large, "allocations of a scrape: %v with 100 users, %v with 100,000", small, large)
}

// BenchmarkScrape gathers an engine's metrics as a /metrics request does
// (without the text encoding): 1M users, 100k rooms holding 100k
// memberships, two windows.
func BenchmarkScrape(b *testing.B) {
	e, reg := filled(1<<20, 100_000)
	defer e.Close()
	st := e.Stats()
	b.Logf("users %d, rooms %d, memberships %d", st.Users, st.Rooms, st.Memberships)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
