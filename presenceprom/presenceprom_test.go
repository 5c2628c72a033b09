package presenceprom_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/middleware"
	"github.com/onlinenow/presence/presenceprom"
	"github.com/onlinenow/presence/presenceprom/internal/scrapetest"
)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

var (
	scrape = scrapetest.Scrape
	value  = scrapetest.Value
)

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
