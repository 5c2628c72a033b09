package presencehttp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
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
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	require.NoError(t, err)
	req.Header.Set("X-Admin", "yes")
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	c := &sseClient{resp: resp, cancel: cancel, msgs: make(chan message, 1024)}
	if resp.StatusCode != http.StatusOK {
		return c
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
	return c
}

func (c *sseClient) close() {
	c.cancel()
	c.resp.Body.Close()
}

// next returns the next event, skipping comments.
func (c *sseClient) next(t testing.TB) message {
	t.Helper()
	for {
		select {
		case m, ok := <-c.msgs:
			require.True(t, ok, "stream ended")
			if m.Comment == "" {
				return m
			}
		case <-time.After(waitFor):
			t.Fatal("no event")
		}
	}
}

// comment returns the next comment, skipping events.
func (c *sseClient) comment(t testing.TB) string {
	t.Helper()
	for {
		select {
		case m, ok := <-c.msgs:
			require.True(t, ok, "stream ended")
			if m.Comment != "" {
				return m.Comment
			}
		case <-time.After(waitFor):
			t.Fatal("no comment")
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
	d := m.data(t)
	require.Equal(t, m.Event, d.Kind)
	require.Equal(t, m.ID, strconv.FormatUint(d.Seq, 10), "the event ID is the Seq")
	return strings.TrimSpace(d.Kind + " " + d.ID + " " + d.Room)
}

func eventServer(t testing.TB, e *presence.Engine, opts ...presencehttp.Option) *httptest.Server {
	srv := httptest.NewServer(presencehttp.Handler(presencehttp.FromEngine(e), admin, opts...))
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

	plain := httptest.NewServer(presencehttp.Handler(downQuerier{}, admin))
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
// keep their size.)
func TestEventStreamClients(t *testing.T) {
	e := presence.New()
	defer e.Close()
	srv := eventServer(t, e)
	n := sseClients()
	base, _ := settle(t, 0, 0)
	var heap uint64
	for round := range 2 {
		clients := make([]*sseClient, n)
		var wg sync.WaitGroup
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				clients[i] = openStream(t, srv.URL+"/api/events", "")
				clients[i].comment(t)
			}()
		}
		wg.Wait()
		assert.Greater(t, runtime.NumGoroutine(), base+n, "a goroutine per stream while open")
		id := fmt.Sprint("user-", round)
		e.Touch(id)
		for _, c := range clients {
			assert.Equal(t, "online "+id, c.next(t).short(t))
		}
		for _, c := range clients {
			c.close()
		}
		clients = nil
		if round == 0 {
			base, heap = settle(t, 0, 0) // with the handler's subscription's reader
		} else {
			settle(t, base, heap)
		}
	}
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
