package presenceprom_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/middleware"
	"github.com/onlinenow/presence/presenceprom"
	"github.com/onlinenow/presence/redispresence"
	"github.com/onlinenow/presence/redispresence/redistest"
)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

// scrape serves reg over HTTP with promhttp, as a server would, GETs it and
// parses the text exposition.
func scrape(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	defer srv.Close()
	req, err := http.NewRequest("GET", srv.URL, nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	require.NoError(t, err)
	return fams
}

// value returns the value of the series of name whose labels include
// those given (name=value pairs), failing the test if there is none.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	require.True(t, ok, "no metric %s", name)
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue()
		case dto.MetricType_SUMMARY:
			return float64(m.GetSummary().GetSampleCount())
		}
	}
	t.Fatalf("no series of %s with labels %v", name, labels)
	return 0
}

func TestEngineMetrics(t *testing.T) {
	now := t0
	e := presence.New(presence.WithClock(func() time.Time { return now }), presence.WithMaxRooms(2),
		presence.WithOnlineWindow(5*time.Minute), presence.WithTouchCount())
	defer e.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(presenceprom.NewCollector(e,
		presenceprom.WithConstLabels(prometheus.Labels{"engine": "web"}),
		presenceprom.WithWindow("1m", time.Minute), presenceprom.WithWindow("55m", 55*time.Minute)))

	fams := scrape(t, reg)
	assert.Zero(t, value(t, fams, "presence_users", "engine", "web"))
	assert.NotContains(t, fams, "presence_snapshot_last_success_timestamp_seconds", "no save yet")
	assert.NotContains(t, fams, "presence_snapshot_size_bytes")

	for i := range 10 {
		e.TouchAt(fmt.Sprint("u", i), t0.Add(-time.Duration(i)*10*time.Minute)) // 0, 10, ... 90 minutes ago
	}
	e.Touch("u0")
	e.TouchIn("doc/1", "u1")
	e.TouchIn("doc/2", "u2")
	e.TouchIn("doc/3", "u3") // ends the least recently active room
	e.TouchIn("bad\x00room", "u4")
	e.Touch("")
	e.Forget("u9")
	sub := e.Subscribe(1)
	defer sub.Close()
	e.Touch("late1") // Online, delivered
	e.Touch("late2") // lost

	dir := t.TempDir()
	path := filepath.Join(dir, "snap")
	require.NoError(t, e.SaveFile(path))
	size, err := os.Stat(path)
	require.NoError(t, err)
	// A directory the engine cannot write to: its parent is a file.
	require.Error(t, e.SaveFile(filepath.Join(path, "under-a-file", "snap")))

	fams = scrape(t, reg)
	assert.Equal(t, 11.0, value(t, fams, "presence_users"))
	assert.Equal(t, 7.0, value(t, fams, "presence_active_users", "window", "1m"),
		"u0; u1 to u4, touched in rooms now (u4's bad room still counts globally); late1 and late2")
	assert.Equal(t, 8.0, value(t, fams, "presence_active_users", "window", "55m"), "and u5, 50 minutes ago")
	assert.Equal(t, 7.0, value(t, fams, "presence_online_users"))
	assert.Equal(t, 10.0+1+4+2, value(t, fams, "presence_touches_total"), "the refused ID is not a touch")
	assert.Equal(t, 12.0, value(t, fams, "presence_users_added_total"))
	assert.Equal(t, 1.0, value(t, fams, "presence_users_removed_total", "reason", "forgotten"))
	assert.Zero(t, value(t, fams, "presence_users_removed_total", "reason", "evicted"))
	assert.Equal(t, 1.0, value(t, fams, "presence_rejected_ids_total"))
	assert.Equal(t, 1.0, value(t, fams, "presence_rejected_rooms_total"))
	assert.Equal(t, 2.0, value(t, fams, "presence_rooms"))
	assert.Equal(t, 2.0, value(t, fams, "presence_room_memberships"))
	assert.Equal(t, 1.0, value(t, fams, "presence_rooms_ended_total"))
	assert.Equal(t, 1.0, value(t, fams, "presence_snapshot_saves_total"))
	assert.Equal(t, 1.0, value(t, fams, "presence_snapshot_errors_total"))
	assert.Equal(t, 2.0, value(t, fams, "presence_snapshot_duration_seconds"), "both saves timed")
	assert.Equal(t, float64(size.Size()), value(t, fams, "presence_snapshot_size_bytes"))
	last := value(t, fams, "presence_snapshot_last_success_timestamp_seconds")
	assert.InDelta(t, float64(size.ModTime().UnixNano())/1e9, last, 5, "the save's end, in Unix seconds")
	assert.Equal(t, 1.0, value(t, fams, "presence_event_subscribers"))
	assert.Equal(t, 2.0, value(t, fams, "presence_events_total"))
	assert.Equal(t, 1.0, value(t, fams, "presence_events_dropped_total"))
	assert.Equal(t, "web", fams["presence_users"].GetMetric()[0].GetLabel()[0].GetValue())
}

func TestLint(t *testing.T) {
	e := presence.New()
	defer e.Close()
	e.Touch("a")
	require.NoError(t, e.SaveFile(filepath.Join(t.TempDir(), "s"))) // the timestamps too
	for name, c := range map[string]prometheus.Collector{
		"engine":     presenceprom.NewCollector(e, presenceprom.WithWindow("15m", 15*time.Minute)),
		"middleware": presenceprom.NewMiddlewareCollector(middleware.NewCounters()),
	} {
		problems, err := testutil.CollectAndLint(c)
		require.NoError(t, err, name)
		assert.Empty(t, problems, name)
		assert.Positive(t, testutil.CollectAndCount(c), name)
	}
}

func TestNamespace(t *testing.T) {
	e := presence.New()
	defer e.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(presenceprom.NewCollector(e, presenceprom.WithNamespace("myapp")),
		presenceprom.NewMiddlewareCollector(middleware.NewCounters(), presenceprom.WithNamespace("myapp")))
	fams := scrape(t, reg)
	assert.Contains(t, fams, "myapp_users")
	assert.NotContains(t, fams, "myapp_touches_total", "an engine made without WithTouchCount counts no touches")
	assert.Contains(t, fams, "myapp_http_requests_total")
	assert.NotContains(t, fams, "presence_users")

	// Two engines in one registry need a label to tell them apart.
	other := presence.New()
	defer other.Close()
	assert.Error(t, reg.Register(presenceprom.NewCollector(other, presenceprom.WithNamespace("myapp"))))
	assert.NoError(t, prometheus.NewRegistry().Register(presenceprom.NewCollector(other)))
}

func TestMiddlewareMetrics(t *testing.T) {
	e := presence.New()
	defer e.Close()
	c := middleware.NewCounters()
	reg := prometheus.NewRegistry()
	reg.MustRegister(presenceprom.NewMiddlewareCollector(c))
	user := func(r *http.Request) (string, bool) { v := r.URL.Query().Get("u"); return v, v != "" }
	h := middleware.Track(e, user, middleware.WithCounters(c), middleware.WithSkipPrefix("/static/"))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for _, target := range []string{"/?u=a", "/?u=b", "/", "/static/x?u=a"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", target, nil))
	}
	fams := scrape(t, reg)
	assert.Equal(t, 2.0, value(t, fams, "presence_http_requests_total", "result", "recorded"))
	assert.Equal(t, 1.0, value(t, fams, "presence_http_requests_total", "result", "anonymous"))
	assert.Equal(t, 1.0, value(t, fams, "presence_http_requests_total", "result", "skipped"))
	assert.Zero(t, value(t, fams, "presence_http_holds_open"))
	assert.Equal(t, 2, e.Len())
}

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
	c := presenceprom.NewStoreCollector(s)
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
