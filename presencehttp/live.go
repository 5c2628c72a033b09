package presencehttp

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/onlinenow/presence"
)

// Live returns the end-user handler of rooms: who is here now, for every
// viewer of a page. Mount it under a prefix (http.StripPrefix):
//
//	GET  /NAME/events       a text/event-stream of room NAME's members
//	                        ?data=JSON: the viewer's presence data (at most presence.MaxDataLen bytes)
//	POST /NAME/data?conn=C  replaces the data of the viewer's stream C (the body, JSON)
//	GET  /client.js         the browser client, an ES module (see the package doc)
//
// authorize is required and runs first: it returns the ID of the viewer
// of the request and whether it may see and join room. A refused request
// gets 403 with {"error":"forbidden"}, and nothing about the room.
//
// Opening the stream holds the viewer in the room (a [presence.Conn], with
// its data) while it is open. The members it lists are those viewing: with
// a connection open (a stream, or any [presence.Backend.Enter]); a member
// whose last connection closed leaves the list at once, though the
// backend keeps it online for its grace or window. The stream sends the
// members first:
//
//	event: state   data: {"self":ID, "conn":C, "count":N, "members":[{"id":..., "data":..., "conns":[...]}]}
//
// then the changes, at most one diff per [WithCoalesce] (default 100ms):
// a change after a quiet window goes out at once, the changes of a burst
// together at the window's end:
//
//	event: diff    data: {"joins":[member...], "leaves":[{"id":...}]}
//
// A member's "data" is the data of its newest connection that has some
// (null if none has), "conns" that of each connection in the order they
// opened (null for one without). An
// update of a member's data is a join with the new data. A room of more
// than [WithMaxMembers] members (default 100) sends counts only:
//
//	event: count   data: {"count":N}
//
// A ": heartbeat" comment every [WithHeartbeat] keeps a quiet stream open.
// A viewer that falls behind (its subscription overflows) gets a fresh
// state; one that stops reading is cut off after 10 seconds. Neither
// delays the others: each stream has its own scoped subscription, and
// publishing never waits. A reconnect gets a fresh state.
func Live(b presence.Backend, authorize func(r *http.Request, room string) (id string, ok bool), opts ...Option) http.Handler {
	if b == nil {
		panic("presencehttp: Live: nil Backend")
	}
	if authorize == nil {
		panic("presencehttp: Live: nil authorize: say who may see and join which room")
	}
	l := &live{b: b, authorize: authorize, conns: map[string]*liveConn{}}
	for _, o := range opts {
		o(&l.config)
	}
	if l.heartbeat <= 0 {
		l.heartbeat = defaultHeartbeat
	}
	if l.coalesce <= 0 {
		l.coalesce = defaultCoalesce
	}
	if l.maxMembers <= 0 {
		l.maxMembers = defaultMaxMembers
	}
	return l
}

const (
	defaultCoalesce   = 100 * time.Millisecond
	defaultMaxMembers = 100
	liveBuffer        = 256 // each stream's subscription
)

// WithCoalesce sets the least time between two diffs of a room stream
// (default 100ms): the changes of a burst are gathered into one diff per
// window, so N joins reach a viewer as far fewer than N messages.
func WithCoalesce(d time.Duration) Option { return func(c *config) { c.coalesce = d } }

// WithMaxMembers sets the most members a room stream lists (default 100):
// a bigger room sends its count instead.
func WithMaxMembers(n int) Option { return func(c *config) { c.maxMembers = n } }

//go:embed client/presence.js
var clientJS []byte

type live struct {
	config
	b         presence.Backend
	authorize func(*http.Request, string) (string, bool)
	mu        sync.Mutex
	conns     map[string]*liveConn // open streams, by token
}

// liveConn is one open stream: its viewer's connection in the room.
type liveConn struct {
	id, room string
	conn     presence.Conn
}

func (l *live) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	path := strings.TrimPrefix(r.URL.Path, "/")
	if path == "client.js" && r.Method == http.MethodGet {
		h.Set("Content-Type", "text/javascript; charset=utf-8")
		w.Write(clientJS)
		return
	}
	room, action, ok := cutLast(path)
	if !ok || (action != "events" || r.Method != http.MethodGet) && (action != "data" || r.Method != http.MethodPost) {
		writeJSON(w, http.StatusNotFound, errorBody{"not found"})
		return
	}
	id, allowed := l.authorize(r, room)
	if !allowed || !presence.ValidID(id) {
		writeJSON(w, http.StatusForbidden, errorBody{"forbidden"})
		return
	}
	if !presence.ValidRoom(room) {
		badRequest(w, "room: want 1 to %d bytes of UTF-8 without NUL", presence.MaxIDLen)
		return
	}
	if action == "data" {
		l.update(w, r, room, id)
		return
	}
	l.stream(w, r, room, id)
}

// cutLast splits "NAME/action" at its last slash.
func cutLast(path string) (room, action string, ok bool) {
	i := strings.LastIndexByte(path, '/')
	if i <= 0 {
		return "", "", false
	}
	return path[:i], path[i+1:], true
}

// checkData returns data as the stream embeds it: valid JSON of at most
// MaxDataLen bytes, compacted; nil for none.
func checkData(data []byte) ([]byte, error) {
	if len(data) == 0 {
		return nil, nil
	}
	if err := presence.CheckData(data); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		return nil, errors.New("data: want JSON")
	}
	return buf.Bytes(), nil
}

// update serves POST NAME/data.
func (l *live) update(w http.ResponseWriter, r *http.Request, room, id string) {
	l.mu.Lock()
	c := l.conns[r.URL.Query().Get("conn")]
	l.mu.Unlock()
	if c == nil || c.id != id || c.room != room {
		writeJSON(w, http.StatusNotFound, errorBody{"no such stream of yours in this room"})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, presence.MaxDataLen+1))
	if err == nil {
		body, err = checkData(body)
	}
	if err == nil {
		err = c.conn.Update(body)
	}
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// memberJSON is a member as the room stream sends it.
type memberJSON struct {
	ID    string            `json:"id"`
	Data  json.RawMessage   `json:"data"`
	Conns []json.RawMessage `json:"conns"`
}

func memberOf(id string, conns [][]byte) memberJSON {
	m := memberJSON{ID: id, Data: json.RawMessage("null"), Conns: make([]json.RawMessage, len(conns))}
	for i, d := range conns {
		if d == nil {
			m.Conns[i] = json.RawMessage("null")
			continue
		}
		m.Conns[i] = d
		m.Data = d // the newest's with data
	}
	return m
}

type stateJSON struct {
	Self    string       `json:"self"`
	Conn    string       `json:"conn"`
	Count   int          `json:"count"`
	Members []memberJSON `json:"members"`
}

type leaveJSON struct {
	ID string `json:"id"`
}

type diffJSON struct {
	Joins  []memberJSON `json:"joins"`
	Leaves []leaveJSON  `json:"leaves"`
}

// stream serves GET NAME/events.
func (l *live) stream(w http.ResponseWriter, r *http.Request, room, id string) {
	data, err := checkData([]byte(r.URL.Query().Get("data")))
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	ctx := r.Context()
	// Subscribed before the state is read: nothing falls between.
	sub, err := l.b.Subscribe(ctx, liveBuffer, presence.InRooms(room))
	if errors.Is(err, presence.ErrNoEvents) {
		writeJSON(w, http.StatusNotFound, errorBody{"this backend sends no events"})
		return
	} else if err != nil {
		unavailable(w)
		return
	}
	defer sub.Close()
	conn, err := l.b.Enter(room, id, data)
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	defer conn.Close()
	token := newToken()
	l.mu.Lock()
	l.conns[token] = &liveConn{id: id, room: room, conn: conn}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.conns, token)
		l.mu.Unlock()
	}()

	st := openStream(w)
	defer st.done()
	v := &viewer{l: l, st: st, room: room, self: id, conn: token}
	if v.state(ctx) != nil || st.flush() != nil {
		return
	}
	heartbeat := time.NewTicker(l.heartbeat)
	defer heartbeat.Stop()
	// A change goes out at once if no diff went out within the coalescing
	// window, and otherwise with the others at the window's end: a lone
	// join arrives without delay, a burst as one diff per window.
	var due <-chan time.Time // the coalesced diff's, while changes wait
	var sent time.Time       // the last diff's
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-sub.Events():
			if !ok {
				return // the backend closed
			}
			if ev.Kind == presence.Overflow {
				v.reset()
				err = v.state(ctx)
				due = nil
			} else if v.add(ev) && due == nil {
				if wait := l.coalesce - time.Since(sent); wait > 0 {
					due = time.After(wait)
				} else {
					sent = time.Now()
					err = v.diff(ctx)
				}
			}
		case <-due:
			due, sent = nil, time.Now()
			err = v.diff(ctx)
		case <-heartbeat.C:
			st.comment("heartbeat")
		}
		if err != nil || st.flush() != nil {
			return
		}
	}
}

func newToken() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// viewer is one stream's view of its room: the members it was sent, and
// the changes waiting for the next diff. Used by the stream's goroutine
// only.
type viewer struct {
	l          *live
	st         *stream
	room, self string
	conn       string
	counts     bool                // the room is too big: counts only
	sentCount  int                 // the last count sent, -1 after a state
	known      map[string]string   // sent as members: their connections' data, as sent
	joins      map[string][][]byte // waiting: the newest data of each
	leaves     map[string]struct{}
	order      []string // the waiting changes' IDs, first change first
}

func (v *viewer) reset() {
	v.joins, v.leaves, v.order = nil, nil, v.order[:0]
}

// add files ev as a change for the next diff, and reports whether one is
// waiting.
func (v *viewer) add(ev presence.Event) bool {
	if ev.Room != v.room {
		return v.joins != nil || v.leaves != nil
	}
	if v.joins == nil {
		v.joins, v.leaves = map[string][][]byte{}, map[string]struct{}{}
	}
	_, a := v.joins[ev.ID]
	_, b := v.leaves[ev.ID]
	if !a && !b {
		v.order = append(v.order, ev.ID)
	}
	switch {
	case (ev.Kind == presence.Join || ev.Kind == presence.Update) && len(ev.Data) > 0:
		v.joins[ev.ID] = ev.Data
		delete(v.leaves, ev.ID)
	case ev.Kind == presence.Join, ev.Kind == presence.Update, ev.Kind == presence.Leave:
		delete(v.joins, ev.ID)
		v.leaves[ev.ID] = struct{}{}
	}
	return true
}

// state sends the room as it is now.
func (v *viewer) state(ctx context.Context) error {
	q := v.l.b.Room(v.room)
	page, _, err := q.OnlinePage(ctx, "", v.l.maxMembers+1)
	if err != nil {
		return err
	}
	v.known, v.sentCount = map[string]string{}, -1
	if v.counts = len(page) > v.l.maxMembers; v.counts {
		n, err := q.Online(ctx)
		if err != nil {
			return err
		}
		return v.sendCount(n)
	}
	s := stateJSON{Self: v.self, Conn: v.conn, Members: []memberJSON{}}
	for _, a := range page {
		if len(a.Data) > 0 { // viewing: a connection open
			s.Members = append(s.Members, memberOf(a.ID, a.Data))
			v.known[a.ID] = fmt.Sprintf("%q", a.Data)
		}
	}
	s.Count = len(s.Members)
	return v.st.named("state", s)
}

// count sends the room's count, or its members once it is small again
// (half the limit, so that a room at the edge does not flap).
func (v *viewer) count(ctx context.Context) error {
	n, err := v.l.b.Room(v.room).Online(ctx)
	if err != nil {
		return err
	}
	if n <= v.l.maxMembers/2 {
		return v.state(ctx)
	}
	return v.sendCount(n)
}

func (v *viewer) sendCount(n int) error {
	if n == v.sentCount {
		return nil // no news
	}
	v.sentCount = n
	return v.st.named("count", struct {
		Self  string `json:"self"`
		Conn  string `json:"conn"`
		Count int    `json:"count"`
	}{v.self, v.conn, n})
}

// diff sends the changes waiting, as one diff (or a count).
func (v *viewer) diff(ctx context.Context) error {
	defer v.reset()
	if v.counts {
		return v.count(ctx)
	}
	d := diffJSON{Joins: []memberJSON{}, Leaves: []leaveJSON{}}
	for _, id := range v.order {
		if data, ok := v.joins[id]; ok {
			sent, known := v.known[id]
			if now := fmt.Sprintf("%q", data); !known || now != sent {
				d.Joins = append(d.Joins, memberOf(id, data))
				v.known[id] = now
			}
		} else if _, ok := v.known[id]; ok {
			d.Leaves = append(d.Leaves, leaveJSON{id})
			delete(v.known, id)
		}
	}
	if len(v.known) > v.l.maxMembers {
		v.counts = true
		return v.count(ctx)
	}
	if len(d.Joins)+len(d.Leaves) == 0 {
		return nil
	}
	return v.st.named("diff", d)
}
