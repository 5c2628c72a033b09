package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/presencehttp"
	"github.com/onlinenow/presence/redispresence"
	"github.com/onlinenow/presence/redispresence/redistest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// browser finds a Chromium binary, or skips the test (fails it when
// PRESENCE_STRICT is set, as in CI).
func browser(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("PRESENCE_STRICT") != "" {
		t.Fatal("PRESENCE_STRICT is set and no chromium is installed (Debian package chromium)")
	}
	t.Skip("no chromium in PATH; install the Debian package chromium")
	return ""
}

// TestDashboardInChromium drives the dashboard over the engine and over a
// Store on a real redis-server: the same page, the same figures, and a
// touch that arrives live on both.
func TestDashboardInChromium(t *testing.T) {
	exe := browser(t)
	t.Run("Engine", func(t *testing.T) {
		e := presence.New()
		t.Cleanup(func() { e.Close() })
		dashboard(t, exe, e.Backend(), func() {}, time.Second)
	})
	t.Run("Redis", func(t *testing.T) {
		srv := redistest.Start(t)
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		t.Cleanup(func() { rdb.Close() })
		s, err := redispresence.New(rdb, redispresence.WithEvents(), redispresence.WithFlushInterval(100*time.Millisecond),
			redispresence.WithEventPoll(20*time.Millisecond))
		require.NoError(t, err)
		t.Cleanup(func() { s.Close(context.Background()) })
		// A touch waits for a flush and a poll: 3 s is generous.
		dashboard(t, exe, s, func() { require.NoError(t, s.Flush(context.Background())) }, 3*time.Second)
	})
}

// dashboard checks the dashboard over b; sync makes what was recorded
// visible, and a live touch must reach the page within live.
func dashboard(t *testing.T, exe string, b presence.Backend, sync func(), live time.Duration) {
	bctx := context.Background()
	// Users in groups well inside the dashboard's windows, so the counts
	// cannot change while the test reads them.
	now := time.Now()
	groups := []struct {
		ago time.Duration
		n   int
	}{{10 * time.Second, 30}, {3 * time.Minute, 20}, {10 * time.Minute, 15}, {30 * time.Minute, 10}, {2 * time.Hour, 5}}
	for g, grp := range groups {
		for i := range grp.n {
			b.TouchAt(fmt.Sprintf("user-%d-%02d", g, i), now.Add(-grp.ago))
		}
	}
	// Rooms: 25 members of "ticket/42" (the busiest), 3 of "ticket/7".
	for i := range 25 {
		b.TouchInAt("ticket/42", fmt.Sprintf("member-%02d", i), now.Add(-time.Duration(i)*time.Second))
	}
	for i := range 3 {
		b.TouchInAt("ticket/7", fmt.Sprintf("member-%02d", i), now.Add(-time.Minute))
	}
	sync()
	hist := presencehttp.NewHistory(b)
	require.NoError(t, hist.Sample(bctx))

	const token = "let-me-in"
	h := presencehttp.Handler(b,
		func(r *http.Request) bool { return r.Header.Get("X-Admin-Token") == token },
		presencehttp.WithHistory(hist))
	mux := http.NewServeMux()
	mux.Handle("/admin/presence/", http.StripPrefix("/admin/presence", h))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	// Not t.TempDir: Chromium's helper processes may still be writing to
	// their profile as the test ends, which would fail TempDir's cleanup.
	profile, err := os.MkdirTemp("", "presence-e2e-")
	require.NoError(t, err)
	defer os.RemoveAll(profile)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1100, 1000),
		chromedp.UserDataDir(profile),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()

	var counts map[string]string
	var firstRow, status string
	var rows int
	require.NoError(t, chromedp.Run(ctx,
		network.Enable(),
		network.SetExtraHTTPHeaders(network.Headers{"X-Admin-Token": token}),
		chromedp.Navigate(srv.URL+"/admin/presence/"),
		chromedp.WaitVisible(`body[data-ready="true"]`),
		chromedp.Evaluate(`Object.fromEntries([...document.querySelectorAll(".count")].map(d => [d.dataset.window, d.querySelector(".n").dataset.count]))`, &counts),
		chromedp.Evaluate(`document.querySelectorAll("#users tr").length`, &rows),
		chromedp.Text(`#users tr:first-child td.id`, &firstRow),
		chromedp.Text(`#status`, &status),
	))
	assert.Contains(t, status, "updated", status)
	want := map[string]string{}
	for _, w := range []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 24 * time.Hour} {
		n, err := b.Count(bctx, w)
		require.NoError(t, err)
		want[w.String()] = fmt.Sprint(n)
	}
	assert.Equal(t, want, counts, "the numbers shown are the backend's")
	assert.Equal(t, map[string]string{"1m0s": "55", "5m0s": "75", "15m0s": "90", "1h0m0s": "100", "24h0m0s": "105"}, counts)
	assert.Equal(t, 20, rows, "one page of 20 in the 15-minute window")
	newest, _, err := b.Page(bctx, 15*time.Minute, "", 21)
	require.NoError(t, err)
	assert.Equal(t, newest[0].ID, firstRow)

	// Page forward: the second page starts where the engine's does.
	var pageLabel, secondFirst string
	require.NoError(t, chromedp.Run(ctx,
		chromedp.Click(`#next`, chromedp.ByID),
		chromedp.Poll(`document.getElementById("page").textContent === "page 2"`, nil, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second)),
		chromedp.Text(`#users tr:first-child td.id`, &secondFirst),
		chromedp.Text(`#page`, &pageLabel),
	))
	assert.Equal(t, "page 2", pageLabel)
	assert.Equal(t, newest[20].ID, secondFirst)

	// The busiest rooms, and a click on one: its members, newest first, paged.
	var rooms []string
	var roomTitle, roomFirst, roomSecondFirst string
	var roomRows int
	require.NoError(t, chromedp.Run(ctx,
		chromedp.Evaluate(`[...document.querySelectorAll("#rooms li")].map(li => li.querySelector("button").dataset.room + "=" + li.querySelector(".n").dataset.count)`, &rooms),
		chromedp.Click(`#rooms button[data-room="ticket/42"]`, chromedp.ByQuery),
		chromedp.Poll(`document.getElementById("users-title").textContent === "In room ticket/42"`, nil, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second)),
		chromedp.Evaluate(`document.querySelectorAll("#users tr").length`, &roomRows),
		chromedp.Text(`#users-title`, &roomTitle),
		chromedp.Text(`#users tr:first-child td.id`, &roomFirst),
		chromedp.Click(`#next`, chromedp.ByID),
		chromedp.Poll(`document.getElementById("page").textContent === "page 2"`, nil, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second)),
		chromedp.Text(`#users tr:first-child td.id`, &roomSecondFirst),
		chromedp.Click(`#all`, chromedp.ByID),
		chromedp.Poll(`document.getElementById("users-title").textContent === "Recent users"`, nil, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second)),
	))
	assert.Equal(t, []string{"ticket/42=25", "ticket/7=3"}, rooms)
	assert.Equal(t, 20, roomRows)
	members, _, err := b.Room("ticket/42").Page(bctx, 15*time.Minute, "", 0)
	require.NoError(t, err)
	assert.Equal(t, members[0].ID, roomFirst)
	assert.Equal(t, members[20].ID, roomSecondFirst)

	// Search an ID.
	var found string
	require.NoError(t, chromedp.Run(ctx,
		chromedp.SetValue(`#search-id`, "user-3-04"),
		chromedp.Click(`#search button`, chromedp.ByQuery), // Submit would bypass the form's listener
		chromedp.Poll(`document.getElementById("found").dataset.found === "true"`, nil, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second)),
		chromedp.Text(`#found`, &found),
	))
	assert.Contains(t, found, "user-3-04 was last seen 30 min")

	// Live: with the event stream open, a user touched on the server shows
	// in the counts, at the top of the list and in a room's count within
	// live, without a reload (polling is every 30 s while the stream is open).
	require.NoError(t, chromedp.Run(ctx,
		chromedp.WaitVisible(`body[data-live="true"]`),
	))
	start := time.Now()
	b.TouchIn("ticket/7", "fresh-user")
	var refreshed, top, roomCount string
	require.NoError(t, chromedp.Run(ctx,
		chromedp.Poll(`document.querySelector('.count[data-window="1m0s"] .n').dataset.count === "56" &&
			document.querySelector("#users tr:first-child td.id").textContent === "fresh-user" &&
			document.querySelector('#rooms button[data-room="ticket/7"]').nextElementSibling.dataset.count === "4"`, nil,
			chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(live)),
		chromedp.Text(`.count[data-window="1m0s"] .n`, &refreshed),
		chromedp.Text(`#users tr:first-child td.id`, &top),
		chromedp.Evaluate(`document.querySelector('#rooms button[data-room="ticket/7"]').nextElementSibling.dataset.count`, &roomCount),
	))
	t.Logf("a touch reached the page in %v", time.Since(start))
	assert.Equal(t, "56", refreshed)
	assert.Equal(t, "fresh-user", top)
	assert.Equal(t, "4", roomCount)

	var shot []byte
	require.NoError(t, chromedp.Run(ctx, chromedp.FullScreenshot(&shot, 100)))
	path := filepath.Join(t.TempDir(), "dashboard.png")
	require.NoError(t, os.WriteFile(path, shot, 0o644))
	if dir := os.Getenv("PRESENCE_SCREENSHOT_DIR"); dir != "" {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "dashboard.png"), shot, 0o644))
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(shot))
}
