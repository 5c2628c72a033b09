package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/onlinenow/presence/redispresence/redistest"
	"github.com/stretchr/testify/require"
)

// TestLiveRoomInChromium: two browser contexts, signed in as two users,
// open one live page of examples/server and see each other join, update
// their status and leave, through presencehttp.Live's browser client: on
// one server (the engine), and on two servers sharing one redis-server,
// each user on its own. A guest's stream is refused with 403.
func TestLiveRoomInChromium(t *testing.T) {
	exe := browser(t)
	server := buildServer(t)
	t.Run("OneServer", func(t *testing.T) {
		url := startServer(t, server)
		liveRoom(t, exe, url, url)
	})
	t.Run("TwoServersOnRedis", func(t *testing.T) {
		rs := redistest.Start(t)
		liveRoom(t, exe, startServer(t, server, "-redis", rs.Addr()), startServer(t, server, "-redis", rs.Addr()))
	})
}

// buildServer builds examples/server and returns its path.
func buildServer(t *testing.T) string {
	out := filepath.Join(t.TempDir(), "server")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = filepath.Join("..", "examples", "server")
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", b)
	return out
}

// startServer runs the server on a free loopback port until the test
// ends, and returns its URL once it answers.
func startServer(t *testing.T, exe string, args ...string) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(exe, append([]string{"-addr", addr, "-data", t.TempDir()}, args...)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	url := "http://" + addr
	require.Eventually(t, func() bool {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	}, 20*time.Second, 50*time.Millisecond, "the server at %s does not answer", addr)
	return url
}

// newBrowser starts a Chromium of its own (its own profile: its own
// cookies), closed when the test ends. (A second browser context in one
// Chromium cannot open a tab with this chromedp.)
func newBrowser(t *testing.T, exe string) context.Context {
	profile, err := os.MkdirTemp("", "presence-e2e-")
	require.NoError(t, err)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(profile),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() {
		cancelTimeout()
		cancel()
		cancelAlloc()
		os.RemoveAll(profile) // after the browser: its helpers may still write
	})
	require.NoError(t, chromedp.Run(ctx)) // start it
	return ctx
}

// liveRoom drives alice on the server at a and bob on the one at b.
func liveRoom(t *testing.T, exe, a, b string) {
	alice, bob := newBrowser(t, exe), newBrowser(t, exe)
	open := func(ctx context.Context, site, user string) {
		require.NoError(t, chromedp.Run(ctx,
			chromedp.Navigate(site+"/login?user="+user),
			chromedp.Navigate(site+"/live/doc-1"),
			chromedp.WaitVisible(`body[data-live="true"]`),
		))
	}
	viewers := `[...document.querySelectorAll("#viewers li")].map(li => li.dataset.id).sort().join(",")`
	// within waits until cond holds on ctx's page, and returns how long
	// that took: the target is 1 s.
	within := func(ctx context.Context, what, cond string) {
		start := time.Now()
		require.NoError(t, chromedp.Run(ctx, chromedp.Poll(cond, nil,
			chromedp.WithPollingInterval(10*time.Millisecond), chromedp.WithPollingTimeout(time.Second))),
			"%s within 1 s", what)
		t.Logf("%s: %v", what, time.Since(start).Round(time.Millisecond))
	}

	open(alice, a, "alice")
	within(alice, "alice sees herself", viewers+` === "alice"`)
	open(bob, b, "bob")
	within(alice, "alice sees bob join", viewers+` === "alice,bob"`)
	within(bob, "bob sees alice", viewers+` === "alice,bob"`)

	require.NoError(t, chromedp.Run(bob,
		chromedp.SetValue(`#status`, "reviewing"),
		chromedp.Click(`#status-form button`, chromedp.ByQuery),
	))
	within(alice, "alice sees bob's status", `document.querySelector('#viewers li[data-id="bob"]')?.dataset.status === "reviewing"`)

	require.NoError(t, chromedp.Run(bob, chromedp.Navigate("about:blank")))
	within(alice, "alice sees bob leave", viewers+` === "alice"`)

	// A guest (no sign-in) is refused the stream.
	guest := newBrowser(t, exe)
	var status int
	require.NoError(t, chromedp.Run(guest,
		chromedp.Navigate(b+"/healthz"),
		chromedp.Evaluate(`fetch("/live/doc-1/events").then(r => r.status)`, &status,
			func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }),
	))
	require.Equal(t, http.StatusForbidden, status, fmt.Sprintf("a guest's stream on %s", b))
}
