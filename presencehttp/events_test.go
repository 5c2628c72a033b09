package presencehttp_test

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/presencehttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// message is one Server-Sent Event, or a comment (Comment set).
type message struct {
	ID, Event, Data, Comment string
}

// sseClient reads an event stream as a browser's EventSource does.
type sseClient struct {
	resp   *http.Response
	cancel context.CancelFunc
	msgs   chan message
}

// waitFor bounds every wait for the stream: a missing event fails the
// test instead of hanging it. It is not a timing assertion.
const waitFor = 10 * time.Second

func openStream(t testing.TB, url, lastID string) *sseClient {
	t.Helper()
	c, err := dial(url, lastID)
	require.NoError(t, err)
	return c
}

// dial opens an event stream (with a status other than 200, a client
// whose stream yields nothing).
func dial(url, lastID string) (*sseClient, error) {
	h := http.Header{"X-Admin": {"yes"}}
	if lastID != "" {
		h.Set("Last-Event-ID", lastID)
	}
	return dialWith(url, h)
}

// dialWith opens an event stream with the request headers h.
func dialWith(url string, h http.Header) (*sseClient, error) {
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header = h.Clone()
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	c := &sseClient{resp: resp, cancel: cancel, msgs: make(chan message, 1024)}
	if resp.StatusCode != http.StatusOK {
		close(c.msgs)
		return c, nil
	}
	go func() {
		defer close(c.msgs)
		sc := bufio.NewScanner(resp.Body)
		var m message
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				c.msgs <- m
				m = message{}
			case strings.HasPrefix(line, ": "):
				m.Comment = line[2:]
			default:
				k, v, _ := strings.Cut(line, ": ")
				switch k {
				case "id":
					m.ID = v
				case "event":
					m.Event = v
				case "data":
					m.Data = v
				}
			}
		}
	}()
	return c, nil
}

func (c *sseClient) close() {
	c.cancel()
	c.resp.Body.Close()
}

// next returns the next event, skipping comments.
func (c *sseClient) next(t testing.TB) message {
	t.Helper()
	m, err := c.await(false)
	require.NoError(t, err)
	return m
}

// comment returns the next comment, skipping events.
func (c *sseClient) comment(t testing.TB) string {
	t.Helper()
	m, err := c.await(true)
	require.NoError(t, err)
	return m.Comment
}

// await returns the next comment or the next event, skipping the other
// kind, within waitFor.
func (c *sseClient) await(comment bool) (message, error) {
	timeout := time.After(waitFor)
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				return m, errors.New("stream ended")
			}
			if (m.Comment != "") == comment {
				return m, nil
			}
		case <-timeout:
			return message{}, errors.New("nothing within the wait")
		}
	}
}

type eventData struct {
	Kind, ID, Room string
	At             time.Time
	Seq            uint64
}

func (m message) data(t testing.TB) eventData {
	t.Helper()
	var d eventData
	require.NoError(t, json.Unmarshal([]byte(m.Data), &d), m.Data)
	return d
}

// short is an event's kind, id and room, to compare.
func (m message) short(t testing.TB) string {
	t.Helper()
	s, err := m.describe()
	require.NoError(t, err)
	return s
}

// describe returns an event's kind, id and room, checking that its kind
// and ID are its data's kind and Seq.
func (m message) describe() (string, error) {
	var d eventData
	if err := json.Unmarshal([]byte(m.Data), &d); err != nil {
		return "", fmt.Errorf("%w: %q", err, m.Data)
	}
	if m.Event != d.Kind || m.ID != strconv.FormatUint(d.Seq, 10) {
		return "", fmt.Errorf("event %q id %q, data %q: the event ID is not the Seq or the kind is not the data's", m.Event, m.ID, m.Data)
	}
	return strings.TrimSpace(d.Kind + " " + d.ID + " " + d.Room), nil
}

func eventServer(t testing.TB, e *presence.Engine, opts ...presencehttp.Option) *httptest.Server {
	srv := httptest.NewServer(presencehttp.Handler(e.Backend(), admin, opts...))
	t.Cleanup(srv.Close)
	return srv
}

func TestEventStream(t *testing.T) {
	e := presence.New()
	defer e.Close()
	srv := eventServer(t, e)
	all := openStream(t, srv.URL+"/api/events", "")
	defer all.close()
	assert.Equal(t, "text/event-stream", all.resp.Header.Get("Content-Type"))
	assert.Equal(t, "no-store", all.resp.Header.Get("Cache-Control"))
	assert.Equal(t, "ok", all.comment(t), "the stream opens at once")
	doc := openStream(t, srv.URL+"/api/events?room=doc", "")
	defer doc.close()
	doc.comment(t)

	e.Touch("alice")
	e.TouchIn("doc", "bob")
	e.TouchIn("other", "alice")
	assert.Equal(t, "online alice", all.next(t).short(t))
	assert.Equal(t, "online bob", all.next(t).short(t))
	assert.Equal(t, "join bob doc", all.next(t).short(t))
	m := all.next(t)
	assert.Equal(t, "join alice other", m.short(t))
	assert.Equal(t, "4", m.ID)
	assert.WithinDuration(t, time.Now(), m.data(t).At, time.Minute)

	assert.Equal(t, "join bob doc", doc.next(t).short(t), "room= gets that room's events only")
	e.Leave("doc", "bob")
	assert.Equal(t, "leave bob doc", doc.next(t).short(t))
	assert.Equal(t, "leave bob doc", all.next(t).short(t))
}

func TestEventStreamResume(t *testing.T) {
	e := presence.New()
	defer e.Close()
	srv := eventServer(t, e, presencehttp.WithEventReplay(8))
	c := openStream(t, srv.URL+"/api/events", "")
	c.comment(t)
	e.Touch("u0")
	last := c.next(t)
	c.close()

	for i := 1; i <= 5; i++ { // missed while away, inside the ring
		e.Touch(fmt.Sprint("u", i))
	}
	back := openStream(t, srv.URL+"/api/events", last.ID)
	for i := 1; i <= 5; i++ {
		assert.Equal(t, fmt.Sprint("online u", i), back.next(t).short(t), "resumed in order")
	}
	back.close()

	watch := openStream(t, srv.URL+"/api/events", "") // to know the handler has them all
	defer watch.close()
	watch.comment(t)
	for i := 6; i <= 20; i++ { // more than the ring holds
		e.Touch(fmt.Sprint("u", i))
	}
	for watch.next(t).short(t) != "online u20" {
	}
	late := openStream(t, srv.URL+"/api/events", "6")
	defer late.close()
	o := late.next(t)
	assert.Equal(t, "overflow", o.Event, "too old to resume: re-read the state")
	assert.Equal(t, "21", o.ID, "the newest event missed, to resume from")
	e.Touch("u21")
	assert.Equal(t, "online u21", late.next(t).short(t))

	for _, id := range []string{"garbage", "999999"} { // unparseable, or from before a restart
		c := openStream(t, srv.URL+"/api/events", id)
		assert.Equal(t, "overflow", c.next(t).Event, id)
		c.close()
	}
}

// TestEventStreamSlowClient: a client that falls more than the ring behind
// gets an overflow where it resumes, and the stream's memory is the ring.
func TestEventStreamSlowClient(t *testing.T) {
	e := presence.New()
	defer e.Close()
	srv := eventServer(t, e, presencehttp.WithEventReplay(16))
	c := openStream(t, srv.URL+"/api/events", "")
	defer c.close()
	c.comment(t)
	// Far more than the ring, the subscription's buffer and the
	// connection's buffers together hold.
	const n = 200_000
	for i := range n {
		e.Touch(fmt.Sprint("u", i))
	}
	// Then a user a little later, again until the client sees one: the
	// handler's own subscription may lose the first while it catches up.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := 0; ; i++ {
			e.Touch(fmt.Sprint("final-", i))
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	var overflows, events int
	var seq uint64
	for {
		m := c.next(t)
		if m.Event == "overflow" {
			overflows++
			continue
		}
		events++
		d := m.data(t)
		require.Greater(t, d.Seq, seq, "in order")
		seq = d.Seq
		if strings.HasPrefix(d.ID, "final-") {
			break
		}
	}
	assert.Positive(t, overflows)
	assert.Less(t, events, n)
}

func TestEventStreamHeartbeat(t *testing.T) {
	e := presence.New()
	defer e.Close()
	srv := eventServer(t, e, presencehttp.WithHeartbeat(10*time.Millisecond))
	c := openStream(t, srv.URL+"/api/events", "")
	defer c.close()
	assert.Equal(t, "ok", c.comment(t))
	assert.Equal(t, "heartbeat", c.comment(t))
	assert.Equal(t, "heartbeat", c.comment(t))
}

func TestEventStreamRefused(t *testing.T) {
	e := presence.New()
	defer e.Close()
	srv := eventServer(t, e)
	c := openStream(t, srv.URL+"/api/events?room=", "")
	assert.Equal(t, http.StatusBadRequest, c.resp.StatusCode)
	c.close()

	req, _ := http.NewRequest("GET", srv.URL+"/api/events", nil)
	resp, err := http.DefaultClient.Do(req) // no X-Admin
	require.NoError(t, err)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp.Body.Close()

	plain := httptest.NewServer(presencehttp.Handler(newDown(), admin))
	defer plain.Close()
	c = openStream(t, plain.URL+"/api/events", "")
	assert.Equal(t, http.StatusNotFound, c.resp.StatusCode, "a backend without events")
	c.close()
}

func TestEventStreamEndsWithEngine(t *testing.T) {
	e := presence.New()
	srv := eventServer(t, e)
	c := openStream(t, srv.URL+"/api/events", "")
	defer c.close()
	c.comment(t)
	require.NoError(t, e.Close())
	select {
	case _, ok := <-c.msgs:
		assert.False(t, ok, "the stream ends when the engine closes")
	case <-time.After(waitFor):
		t.Fatal("stream still open")
	}
}

// sseClients is how many clients TestEventStreamClients connects; the
// full 10k runs with PRESENCE_SSE_CLIENTS=10000 (see BENCHMARKS.md).
func sseClients() int {
	if n, err := strconv.Atoi(os.Getenv("PRESENCE_SSE_CLIENTS")); err == nil && n > 0 {
		return n
	}
	return 200
}

// TestEventStreamClients: many clients connect, receive an event and
// disconnect, twice; after the second round the server's goroutines and
// heap are back to what they were after the first. (The first round sets
// the baseline: the runtime keeps the goroutine structs it made, and maps
// keep their size.) The clients run in a child process (this test binary,
// see TestMain), so that the server's process holds only its side of each
// connection: 10,000 clients would take 20,000 descriptors in one.
func TestEventStreamClients(t *testing.T) {
	e := presence.New()
	defer e.Close()
	srv := eventServer(t, e)
	n := sseClients()
	base, _ := settle(t, 0, 0)
	var heap uint64
	for round := range 2 {
		clients := startClients(t, srv.URL+"/api/events", n)
		open := runtime.NumGoroutine()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		assert.Greater(t, open, base+n, "a goroutine per stream while open")
		id := fmt.Sprint("user-", round)
		e.Touch(id)
		clients.do(t, "expect online "+id)
		clients.do(t, "close")
		require.NoError(t, clients.cmd.Wait())
		var g int
		var h uint64
		if round == 0 {
			base, heap = settle(t, 0, 0) // with the handler's subscription's reader
			g, h = base, heap
		} else {
			g, h = settle(t, base, heap)
		}
		t.Logf("round %d: %d streams, %d goroutines and a heap of %d KiB while open, %d and %d KiB after (baseline %d and %d KiB)",
			round, n, open, ms.HeapAlloc>>10, g, h>>10, base, heap>>10)
	}
}

// clientProcess is a child process holding n event streams open.
type clientProcess struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
}

// startClients starts a child process that opens n streams of url and
// waits until each has its first comment.
func startClients(t *testing.T, url string, n int) *clientProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "PRESENCE_SSE_HELPER="+url, "PRESENCE_SSE_CLIENTS="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	require.NoError(t, err)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &clientProcess{cmd: cmd, in: in, lines: make(chan string)}
	t.Cleanup(func() { cmd.Process.Kill() }) // after Wait, a no-op
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	p.reply(t)
	return p
}

// do sends the child a command and waits for its "ok".
func (p *clientProcess) do(t *testing.T, cmd string) {
	t.Helper()
	_, err := fmt.Fprintln(p.in, cmd)
	require.NoError(t, err)
	p.reply(t)
}

func (p *clientProcess) reply(t *testing.T) {
	t.Helper()
	select {
	case line, ok := <-p.lines:
		require.True(t, ok, "the client process ended")
		require.Equal(t, "ok", line)
	case <-time.After(2 * time.Minute): // 10,000 clients under -race
		t.Fatal("no answer from the client process")
	}
}

// TestMain runs the client process of TestEventStreamClients when this
// binary is started as one.
func TestMain(m *testing.M) {
	if url := os.Getenv("PRESENCE_SSE_HELPER"); url != "" {
		os.Exit(runClients(url, sseClients()))
	}
	os.Exit(m.Run())
}

// runClients opens n streams of url, then answers the commands read from
// stdin, a line each, with "ok" or an error: "expect EVENT" (each stream's
// next event is EVENT, as message.describe puts it) and "close".
func runClients(url string, n int) int {
	answer := func(err error) {
		if err != nil {
			fmt.Println("error:", err)
		} else {
			fmt.Println("ok")
		}
	}
	clients := make([]*sseClient, n)
	answer(each(clients, func(i int, _ *sseClient) error {
		c, err := dial(url, "")
		if err != nil {
			return err
		}
		clients[i] = c
		if c.resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", c.resp.StatusCode)
		}
		_, err = c.await(true)
		return err
	}))
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch cmd, arg, _ := strings.Cut(in.Text(), " "); cmd {
		case "expect":
			answer(each(clients, func(_ int, c *sseClient) error {
				m, err := c.await(false)
				if err != nil {
					return err
				}
				if got, err := m.describe(); err != nil || got != arg {
					return fmt.Errorf("got %q (%v), want %q", got, err, arg)
				}
				return nil
			}))
		case "close":
			for _, c := range clients {
				c.close()
			}
			answer(nil)
			return 0
		default:
			answer(fmt.Errorf("unknown command %q", cmd))
		}
	}
	return 1
}

// each runs f for every client, 256 at a time, and returns the first
// error.
func each(clients []*sseClient, f func(int, *sseClient) error) error {
	var wg sync.WaitGroup
	var first error
	var mu sync.Mutex
	sem := make(chan struct{}, 256)
	for i, c := range clients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := f(i, c); err != nil {
				mu.Lock()
				first = cmp.Or(first, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

// settle waits until the goroutine count is at most goroutines and the heap
// at most heap plus 4 MiB (or, with goroutines 0, until the count stops
// falling), and returns them.
func settle(t testing.TB, goroutines int, heap uint64) (int, uint64) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	var ms runtime.MemStats
	for {
		http.DefaultClient.CloseIdleConnections()
		runtime.GC()
		runtime.GC() // sync.Pool (the server's bufio buffers) empties in two
		runtime.ReadMemStats(&ms)
		g := runtime.NumGoroutine()
		if goroutines == 0 {
			time.Sleep(50 * time.Millisecond)
			if g2 := runtime.NumGoroutine(); g2 >= g {
				return g, ms.HeapAlloc
			}
			continue
		}
		if g <= goroutines && ms.HeapAlloc <= heap+4<<20 {
			return g, ms.HeapAlloc
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines %d (baseline %d), heap %d (baseline %d)", g, goroutines, ms.HeapAlloc, heap)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
