package presencehttp_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/presencehttp"
)

// viewerOf is the tests' authorize: the user is the X-User header (an
// application's session would say), and no one may see room "secret".
func viewerOf(r *http.Request, room string) (string, bool) {
	id := r.Header.Get("X-User")
	return id, id != "" && room != "secret"
}

type member struct {
	ID    string            `json:"id"`
	Data  json.RawMessage   `json:"data"`
	Conns []json.RawMessage `json:"conns"`
}

type liveMsg struct {
	Self    string   `json:"self"`
	Conn    string   `json:"conn"`
	Count   int      `json:"count"`
	Members []member `json:"members"`
	Joins   []member `json:"joins"`
	Leaves  []member `json:"leaves"`
}

func liveOf(t *testing.T, m message) liveMsg {
	t.Helper()
	var v liveMsg
	require.NoError(t, json.Unmarshal([]byte(m.Data), &v), m.Data)
	return v
}

// ids is the members' IDs and data, to compare.
func ids(ms []member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID+"="+string(m.Data))
	}
	return out
}

type liveEnv struct {
	t   *testing.T
	e   *presence.Engine
	srv *httptest.Server
	now atomic.Int64
}

func newLive(t *testing.T, opts ...presencehttp.Option) *liveEnv {
	l := &liveEnv{t: t}
	l.now.Store(time.Now().UnixNano())
	l.e = presence.New(presence.WithClock(func() time.Time { return time.Unix(0, l.now.Load()) }),
		presence.WithHoldGrace(2*time.Second))
	t.Cleanup(func() { l.e.Close() })
	l.srv = httptest.NewServer(http.StripPrefix("/live", presencehttp.Live(l.e.Backend(), viewerOf, opts...)))
	t.Cleanup(l.srv.Close)
	return l
}

func (l *liveEnv) open(user, room, data string) *sseClient {
	l.t.Helper()
	u := l.srv.URL + "/live/" + room + "/events"
	if data != "" {
		u += "?data=" + data
	}
	c, err := dialWith(u, http.Header{"X-User": {user}})
	require.NoError(l.t, err)
	l.t.Cleanup(c.close)
	return c
}

func (l *liveEnv) post(user, room, conn, body string) *http.Response {
	l.t.Helper()
	req, _ := http.NewRequest("POST", l.srv.URL+"/live/"+room+"/data?conn="+conn, strings.NewReader(body))
	req.Header.Set("X-User", user)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(l.t, err)
	resp.Body.Close()
	return resp
}

// TestLiveRoom: two viewers of one room see each other arrive with their
// data, update it, and leave; a state first, then diffs.
func TestLiveRoom(t *testing.T) {
	l := newLive(t)
	alice := l.open("alice", "doc", `{"name":"A"}`)
	m := alice.next(t)
	require.Equal(t, "state", m.Event)
	st := liveOf(t, m)
	assert.Equal(t, "alice", st.Self)
	assert.NotEmpty(t, st.Conn)
	assert.Equal(t, []string{`alice={"name":"A"}`}, ids(st.Members))

	bob := l.open("bob", "doc", `{"name":"B"}`)
	st = liveOf(t, bob.next(t))
	assert.ElementsMatch(t, []string{`alice={"name":"A"}`, `bob={"name":"B"}`}, ids(st.Members))
	m = alice.next(t)
	require.Equal(t, "diff", m.Event)
	assert.Equal(t, []string{`bob={"name":"B"}`}, ids(liveOf(t, m).Joins))

	// bob's data changes in place: a join with the new data.
	assert.Equal(t, http.StatusNoContent, l.post("bob", "doc", st.Conn, `{"name": "B", "typing": true}`).StatusCode)
	d := liveOf(t, alice.next(t))
	assert.Equal(t, []string{`bob={"name":"B","typing":true}`}, ids(d.Joins))
	assert.Empty(t, d.Leaves)

	// Another viewer's stream, bad data, another room: refused.
	assert.Equal(t, http.StatusNotFound, l.post("alice", "doc", st.Conn, `{}`).StatusCode)
	assert.Equal(t, http.StatusBadRequest, l.post("bob", "doc", st.Conn, `not json`).StatusCode)
	assert.Equal(t, http.StatusBadRequest, l.post("bob", "doc", st.Conn, `"`+strings.Repeat("x", presence.MaxDataLen)+`"`).StatusCode)
	assert.Equal(t, http.StatusNotFound, l.post("bob", "other", st.Conn, `{}`).StatusCode)

	// bob closes his tab: he views no more, at once (the engine keeps him
	// online for the grace).
	bob.close()
	d = liveOf(t, alice.next(t))
	assert.Empty(t, d.Joins)
	assert.Equal(t, []string{"bob="}, ids(d.Leaves))
	assert.Equal(t, 2, l.e.Room("doc").Online(), "online for the grace")
	l.now.Add(int64(3 * time.Second)) // past the grace: the sweeper's next tick finds it
	require.Eventually(t, func() bool { return l.e.Room("doc").Online() == 1 }, waitFor, 10*time.Millisecond)

	// A reconnect gets a fresh state.
	alice2 := l.open("alice", "doc", "")
	st = liveOf(t, alice2.next(t))
	assert.Equal(t, []string{`alice={"name":"A"}`}, ids(st.Members), "alice's newest connection has no data; her member data is her newest")
	assert.Len(t, st.Members[0].Conns, 2, "one member, each connection listed")
}

// TestLiveRefused: a viewer authorize refuses gets 403 and nothing else;
// bad requests get 400 before any hold.
func TestLiveRefused(t *testing.T) {
	l := newLive(t)
	for _, tc := range []struct {
		user, path string
		want       int
	}{
		{"alice", "/live/secret/events", http.StatusForbidden},
		{"", "/live/doc/events", http.StatusForbidden},
		{"alice", "/live/doc/events?data=nojson", http.StatusBadRequest},
		{"alice", "/live/doc/nothing", http.StatusNotFound},
	} {
		req, _ := http.NewRequest("GET", l.srv.URL+tc.path, nil)
		req.Header.Set("X-User", tc.user)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, tc.want, resp.StatusCode, tc.path)
		if tc.want == http.StatusForbidden {
			assert.JSONEq(t, `{"error":"forbidden"}`, string(body))
		}
	}
	assert.Zero(t, l.e.Online(), "no one held by a refused or bad request")
	resp, err := http.Get(l.srv.URL + "/live/client.js")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(body), "export function join(")
}

// TestLiveCoalesces: a burst of joins reaches a viewer as a few diffs, not
// one message each.
func TestLiveCoalesces(t *testing.T) {
	l := newLive(t, presencehttp.WithMaxMembers(1000))
	v := l.open("viewer", "show", "")
	require.Equal(t, "state", v.next(t).Event)
	for i := range 200 {
		c, err := l.e.Enter("show", fmt.Sprint("u", i), fmt.Appendf(nil, `{"n":%d}`, i))
		require.NoError(t, err)
		defer c.Close()
	}
	seen, msgs := map[string]bool{}, 0
	for len(seen) < 200 {
		d := liveOf(t, v.next(t))
		msgs++
		for _, m := range d.Joins {
			seen[m.ID] = true
		}
	}
	assert.LessOrEqual(t, msgs, 20, "200 joins in %d diffs", msgs)
}

// TestLiveCounts: a room above WithMaxMembers sends its count only.
func TestLiveCounts(t *testing.T) {
	l := newLive(t, presencehttp.WithMaxMembers(3))
	for i := range 5 {
		c, err := l.e.Enter("big", fmt.Sprint("u", i), nil)
		require.NoError(t, err)
		defer c.Close()
	}
	v := l.open("viewer", "big", "")
	m := v.next(t)
	require.Equal(t, "count", m.Event)
	assert.Equal(t, 6, liveOf(t, m).Count)
	c, err := l.e.Enter("big", "late", nil)
	require.NoError(t, err)
	defer c.Close()
	m = v.next(t)
	require.Equal(t, "count", m.Event)
	assert.Equal(t, 7, liveOf(t, m).Count)
}
