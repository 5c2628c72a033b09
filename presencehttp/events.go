package presencehttp

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/onlinenow/presence"
)

const (
	defaultReplay    = 4096
	defaultHeartbeat = 15 * time.Second
	// writeTimeout bounds each write to an event stream: a client that
	// stops reading is dropped instead of holding its goroutine forever.
	writeTimeout = 10 * time.Second
	// hubBuffer is the handler's subscription's buffer: the hub only
	// copies events into the ring, so it falls behind only in bursts.
	hubBuffer = 4096
)

// WithEventReplay sets how many of the latest events /api/events keeps for
// clients that reconnect with Last-Event-ID, and for clients that fall
// behind (default 4096). It is all the memory the stream takes besides a
// goroutine and a buffer per client: every client reads the same ring.
func WithEventReplay(n int) Option { return func(c *config) { c.replay = n } }

// WithHeartbeat sets how often /api/events writes a comment to a quiet
// stream, so that proxies keep it open and a client that went away is
// noticed (default 15s).
func WithHeartbeat(d time.Duration) Option { return func(c *config) { c.heartbeat = d } }

// hub is the handler's one subscription to the backend, started by the
// first /api/events request, and the ring of its latest events every
// stream reads from. Safe for concurrent use.
type hub struct {
	b       presence.Backend
	size    int
	startMu sync.Mutex // held while the subscription starts
	started bool       // guarded by startMu
	mu      sync.Mutex
	ring    []presence.Event // ring[i%size] holds the event of index i
	n       int              // events ever received
	changed chan struct{}    // closed and replaced at each event batch
	closed  bool             // the backend closed the subscription
}

func newHub(b presence.Backend, size int) *hub {
	return &hub{b: b, size: size, ring: make([]presence.Event, size), changed: make(chan struct{})}
}

// start subscribes to the backend, once it succeeds: a failure (a remote
// backend that is down) is returned, and the next request tries again.
func (h *hub) start(ctx context.Context) error {
	h.startMu.Lock()
	defer h.startMu.Unlock()
	if h.started {
		return nil
	}
	sub, err := h.b.Subscribe(ctx, hubBuffer)
	if err != nil {
		return err
	}
	h.started = true
	go h.run(sub)
	return nil
}

// run reads the subscription into the ring until the backend closes it.
func (h *hub) run(sub *presence.Subscription) {
	events := sub.Events()
	for ev := range events {
		h.mu.Lock()
		h.put(ev)
		// Take what else is waiting under the same lock: one wake-up of
		// the streams per batch, not per event.
		for more := true; more; {
			select {
			case ev, ok := <-events:
				if !ok {
					more = false
					break
				}
				h.put(ev)
			default:
				more = false
			}
		}
		close(h.changed)
		h.changed = make(chan struct{})
		h.mu.Unlock()
	}
	h.mu.Lock()
	h.closed = true
	close(h.changed)
	h.mu.Unlock()
}

func (h *hub) put(ev presence.Event) {
	h.ring[h.n%h.size] = ev
	h.n++
}

// read appends to out the events at index next and after, and returns them
// with the index to read from next and a channel closed when more arrive.
// lost is true if events from next on left the ring before they were read:
// out then starts at the oldest event still held.
func (h *hub) read(next int, out []presence.Event) (_ []presence.Event, _ int, lost bool, changed <-chan struct{}, closed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if oldest := h.n - h.size; next < oldest {
		next, lost = oldest, true
	}
	for ; next < h.n; next++ {
		out = append(out, h.ring[next%h.size])
	}
	return out, next, lost, h.changed, h.closed
}

// head returns the index the next event will have.
func (h *hub) head() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// resume returns the ring index of the event after the one whose Seq is
// seq, or false if that event is no longer (or never was) in the ring,
// with the head and the Seq of the newest event, the last one missed.
func (h *hub) resume(seq uint64) (next int, newest uint64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return 0, 0, seq == 0
	}
	newest = h.ring[(h.n-1)%h.size].Seq
	// Seq rises by one per event in the backend and the ring holds them in
	// order, but an Overflow carries the Seq of the last event lost before
	// it: search from the newest rather than compute. A Seq above the
	// newest is from before the backend restarted.
	for i := h.n - 1; i >= max(0, h.n-h.size) && seq <= newest; i-- {
		if h.ring[i%h.size].Seq == seq {
			return i + 1, newest, true
		}
	}
	return h.n, newest, false
}

// eventJSON is an event in the stream's data lines.
type eventJSON struct {
	Kind string    `json:"kind"`
	ID   string    `json:"id,omitempty"`
	Room string    `json:"room,omitempty"`
	At   time.Time `json:"at"`
	Seq  uint64    `json:"seq"`
}

// events serves /api/events as Server-Sent Events.
func (s *server) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	room, filtered := q.Get("room"), q.Has("room")
	if filtered && !presence.ValidRoom(room) {
		badRequest(w, "room: want 1 to %d bytes of UTF-8 without NUL", presence.MaxIDLen)
		return
	}
	h := s.hub
	if err := h.start(r.Context()); errors.Is(err, presence.ErrNoEvents) {
		writeJSON(w, http.StatusNotFound, errorBody{"this backend sends no events"})
		return
	} else if err != nil {
		unavailable(w)
		return
	}

	// From now on, or after the event the client saw last: EventSource
	// sends its id when it reconnects.
	next, missed, resumed := h.head(), uint64(0), true
	if lastID := r.Header.Get("Last-Event-ID"); lastID != "" {
		seq, err := strconv.ParseUint(lastID, 10, 64)
		if next, missed, resumed = h.resume(seq); err != nil {
			next, resumed = h.head(), false
		}
	}

	st := openStream(w)
	defer st.done()
	if !resumed {
		// The client missed events the ring no longer holds: tell it
		// to re-read the state.
		st.event(presence.Event{Kind: presence.Overflow, At: s.now(), Seq: missed}, missed)
	} else {
		st.comment("ok")
	}
	if st.flush() != nil {
		return
	}

	heartbeat := time.NewTicker(s.heartbeat)
	defer heartbeat.Stop()
	var batch []presence.Event
	for {
		var lost, closed bool
		var changed <-chan struct{}
		batch, next, lost, changed, closed = h.read(next, batch[:0])
		if lost {
			st.event(presence.Event{Kind: presence.Overflow, At: s.now(), Seq: batch[0].Seq - 1}, batch[0].Seq-1)
		}
		for _, ev := range batch {
			if ev.Kind == presence.Overflow || !filtered || ev.Room == room {
				st.event(ev, ev.Seq)
			}
		}
		if st.flush() != nil || closed {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-changed:
		case <-heartbeat.C:
			st.comment("heartbeat")
			if st.flush() != nil {
				return
			}
		}
	}
}

// openStream answers 200 with an event stream; done must be called once
// the handler is through with it.
func openStream(w http.ResponseWriter) *stream {
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	return &stream{w: w, rc: http.NewResponseController(w)}
}

// done clears the write deadline, for the connection's next request.
func (st *stream) done() { st.rc.SetWriteDeadline(time.Time{}) }

// stream writes Server-Sent Events, keeping the first write error.
type stream struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	buf     []byte
	pending bool
}

func (st *stream) event(ev presence.Event, id uint64) {
	data, _ := json.Marshal(eventJSON{Kind: ev.Kind.String(), ID: ev.ID, Room: ev.Room, At: ev.At, Seq: ev.Seq})
	st.buf = append(st.buf, "id: "...)
	st.buf = strconv.AppendUint(st.buf, id, 10)
	st.buf = append(st.buf, "\nevent: "...)
	st.buf = append(st.buf, ev.Kind.String()...)
	st.buf = append(st.buf, "\ndata: "...)
	st.buf = append(st.buf, data...) // JSON escapes newlines: one line
	st.buf = append(st.buf, "\n\n"...)
}

// named buffers an event without an id: its name and v as JSON.
func (st *stream) named(name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	st.buf = append(st.buf, "event: "...)
	st.buf = append(st.buf, name...)
	st.buf = append(st.buf, "\ndata: "...)
	st.buf = append(st.buf, data...)
	st.buf = append(st.buf, "\n\n"...)
	return nil
}

func (st *stream) comment(text string) {
	st.buf = append(st.buf, ": "...)
	st.buf = append(st.buf, text...)
	st.buf = append(st.buf, "\n\n"...)
}

// flush writes what is buffered and flushes it to the client, within
// writeTimeout. Deadlines are best effort: a ResponseWriter without them
// is written to anyway.
func (st *stream) flush() error {
	if len(st.buf) == 0 {
		return nil
	}
	st.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := st.w.Write(st.buf)
	st.buf = st.buf[:0]
	if err == nil {
		err = st.rc.Flush()
	}
	return err
}
