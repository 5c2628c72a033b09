package redisprom_test

import (
	"context"
	"testing"
	"time"

	"github.com/onlinenow/presence/presenceprom/internal/scrapetest"
	"github.com/onlinenow/presence/presenceprom/redisprom"
	"github.com/onlinenow/presence/redispresence"
	"github.com/onlinenow/presence/redispresence/redistest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

var (
	scrape = scrapetest.Scrape
	value  = scrapetest.Value
)

// TestStoreMetrics runs the Redis backend against a real redis-server,
// then kills it: the outage shows as failed writes and pending users,
// the last good flush stays, and all of it clears once Redis is back.
func TestStoreMetrics(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr()},
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond, MaxRetries: -1})
	defer rdb.Close()
	s, err := redispresence.New(rdb, redispresence.WithFlushInterval(time.Hour), redispresence.WithTimeout(300*time.Millisecond),
		redispresence.WithMaxBuffered(3), redispresence.WithClock(func() time.Time { return t0 }))
	require.NoError(t, err)
	defer s.Close(context.Background())
	c := redisprom.NewCollector(s)
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	ctx := context.Background()

	problems, err := testutil.CollectAndLint(c)
	require.NoError(t, err)
	assert.Empty(t, problems)

	s.TouchAt("a", t0)
	s.TouchAt("b", t0)
	require.NoError(t, s.Flush(ctx))
	fams := scrape(t, reg)
	assert.Equal(t, 2.0, value(t, fams, "presence_redis_touches_total"))
	assert.Equal(t, 2.0, value(t, fams, "presence_redis_sent_members_total"))
	assert.Equal(t, 1.0, value(t, fams, "presence_redis_flushes_total"))
	assert.Equal(t, 1.0, value(t, fams, "presence_redis_flush_duration_seconds"))
	assert.Zero(t, value(t, fams, "presence_redis_pending_users"))
	goodFlush := value(t, fams, "presence_redis_last_flush_timestamp_seconds")
	assert.InDelta(t, float64(time.Now().UnixNano())/1e9, goodFlush, 60)

	srv.Stop()
	s.TouchAt("a", t0.Add(time.Second))
	s.TouchAt("c", t0)
	s.TouchAt("d", t0) // the buffer holds 3
	require.Error(t, s.Flush(ctx))
	fams = scrape(t, reg)
	assert.Equal(t, 1.0, value(t, fams, "presence_redis_write_errors_total"))
	assert.Equal(t, 2.0, value(t, fams, "presence_redis_pending_users"))
	assert.Equal(t, 3.0, value(t, fams, "presence_redis_buffered_users"))
	assert.Equal(t, 1.0, value(t, fams, "presence_redis_dropped_touches_total"))
	assert.Equal(t, 1.0, value(t, fams, "presence_redis_flushes_total"))
	assert.Equal(t, 2.0, value(t, fams, "presence_redis_flush_duration_seconds"), "the failed flush is timed")
	assert.Equal(t, goodFlush, value(t, fams, "presence_redis_last_flush_timestamp_seconds"))

	srv.Restart()
	require.Eventually(t, func() bool { return s.Flush(ctx) == nil }, 10*time.Second, 50*time.Millisecond)
	fams = scrape(t, reg)
	assert.Zero(t, value(t, fams, "presence_redis_pending_users"))
	assert.Equal(t, 2.0, value(t, fams, "presence_redis_flushes_total"))
	assert.Greater(t, value(t, fams, "presence_redis_last_flush_timestamp_seconds"), goodFlush)
}
