package redispresence

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/onlinenow/presence"
	"github.com/redis/go-redis/v9"
)

// Connections (Enter, and every Hold) are written to Redis as they open,
// change and close, ahead of the flush, by one writer goroutine of the
// Store: each member (a user, or a user in a room) has a hash
// "<prefix>:conns:{n}ROOM NUL ID" of its open connections' data, by
// connection (its opening time, the Store, a counter: their order), in the
// slot of the set it is in. enterScript writes the hash and the member's
// time and publishes Online (Join) or Update with the data: a viewer on
// another Store sees an arrival at the next read of the streams, not one
// flush later. The flush keeps raising held members as before; the sweep
// deletes the hash of a member it finds gone, so that a Store that died
// leaves nothing listed once its users' window passed.

// enterScript: see scripts/enter.lua.
var enterScript = redis.NewScript(enterLua)

//go:embed scripts/enter.lua
var enterLua string

// memberShard is the shard of the set id is in: its room's, or its own.
func (s *Store) memberShard(room, id string) int {
	if room != "" {
		return s.shardOf(room)
	}
	return s.shardOf(id)
}

// connsKey is the hash of the connections of id in room ("": globally).
func (s *Store) connsKey(room, id string) string {
	return s.connsPrefix(s.memberShard(room, id)) + room + "\x00" + id
}

func (s *Store) connsPrefix(n int) string { return s.cfg.prefix + ":conns:{" + strconv.Itoa(n) + "}" }

// connOp is a write of one connection in one member's hash.
type connOp struct {
	room, id, field string
	data            []byte
	del             bool
	at              int64 // µs
}

// connWriter queues the Store's connection writes, in order, for its
// writer goroutine.
type connWriter struct {
	writing sync.Mutex // held while a batch is taken and written: a Flush waits for one in flight
	mu      sync.Mutex
	q       []connOp
	wake    chan struct{} // capacity 1
	seq     atomic.Uint64
	done    chan struct{}
}

// conn is a Conn of the Store.
type conn struct {
	s            *Store
	room, id     string
	field        string
	user, member *holds // its holds, for the flush; member is nil without a room
	release      func()
	closed       atomic.Bool
}

// Enter opens a connection of id in room ("": globally only) with data,
// held as HoldIn holds, and writes it to Redis at once (not at the next
// flush): Online (Join) or Update events carry the data across the
// fleet, and OnlinePage lists it. It never blocks; a write that fails is
// reported to the error handler, and the member stays present by the
// flush. It returns an error wrapping presence.ErrInvalidID,
// ErrInvalidRoom or ErrDataTooLarge.
func (s *Store) Enter(room, id string, data []byte) (presence.Conn, error) {
	if err := presence.CheckEnter(room, id, data); err != nil {
		if errors.Is(err, presence.ErrInvalidID) {
			s.rejectedIDs.Add(1)
		} else if errors.Is(err, presence.ErrInvalidRoom) {
			s.rejectedRooms.Add(1)
		}
		return nil, fmt.Errorf("redispresence: %w", err)
	}
	return s.enter(room, id, data), nil
}

// enter opens a connection of id (valid) in room (valid, or "").
func (s *Store) enter(room, id string, data []byte) *conn {
	at := s.cfg.now().UnixMicro()
	c := &conn{s: s, room: strings.Clone(room), id: strings.Clone(id),
		field: fmt.Sprintf("%016x:%s:%016x", at, s.node, s.conns.seq.Add(1))}
	var global, inRoom func()
	c.user, global = s.hold(entryKey{id: id})
	c.release = global
	if room != "" {
		c.member, inRoom = s.hold(entryKey{room, id})
		c.release = func() { inRoom(); global() }
	}
	c.write(data, false)
	return c
}

// write queues the connection's data (or its removal) for its user and,
// in a room, its membership (the user's first, so Online comes before
// Join), leaving out a part a Leave or a Forget ended. It reports
// whether any part was left.
func (c *conn) write(data []byte, del bool) bool {
	s := c.s
	at := s.cfg.now().UnixMicro()
	data = slices.Clone(data)
	s.heldMu.Lock()
	user := s.held[entryKey{id: c.id}] == c.user
	member := c.member != nil && s.held[entryKey{c.room, c.id}] == c.member
	s.heldMu.Unlock()
	w := &s.conns
	w.mu.Lock()
	if user {
		w.q = append(w.q, connOp{id: c.id, field: c.field, data: data, del: del, at: at})
	}
	if member {
		w.q = append(w.q, connOp{room: c.room, id: c.id, field: c.field, data: data, del: del, at: at})
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return user || member
}

func (c *conn) Update(data []byte) error {
	if err := presence.CheckData(data); err != nil {
		return fmt.Errorf("redispresence: %w", err)
	}
	if c.closed.Load() || !c.write(data, false) {
		return fmt.Errorf("redispresence: update: %w", presence.ErrClosed)
	}
	return nil
}

func (c *conn) Close() {
	if c.closed.CompareAndSwap(false, true) {
		c.write(nil, true)
		c.release()
	}
}

// writeConns writes the queued connection writes until the Store closes;
// Close writes what is left.
func (s *Store) writeConns() {
	defer close(s.conns.done)
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.conns.wake:
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.timeout)
		if err := s.flushConns(ctx); err != nil && s.ctx.Err() == nil {
			s.flushErrors.Add(1)
			s.report(err)
		}
		cancel()
	}
}

// flushConns writes the queued connection writes, in one pipeline.
func (s *Store) flushConns(ctx context.Context) error {
	w := &s.conns
	w.writing.Lock()
	defer w.writing.Unlock()
	w.mu.Lock()
	ops := w.q
	w.q = nil
	w.mu.Unlock()
	if len(ops) == 0 {
		return nil
	}
	edge := "" // without events, nothing to publish
	if s.ev != nil {
		edge = strconv.FormatInt(s.ev.edge(), 10)
	}
	pipe := s.rdb.Pipeline()
	for _, op := range ops {
		n := s.memberShard(op.room, op.id)
		set := s.keyOf(setRef{usersSet, n, ""})
		if op.room != "" {
			set = s.keyOf(setRef{roomSet, n, op.room})
		}
		verb := "set"
		if op.del {
			verb = "del"
		}
		keys := []string{set, s.streamKey(n), s.stateKey(n), s.connsKey(op.room, op.id)}
		enterScript.Eval(ctx, pipe, keys, s.cfg.streamLen, op.room, op.id, op.at, op.field, verb, op.data, edge)
	}
	_, err := pipe.Exec(ctx)
	return wrap("connections", err)
}

// connsOf returns the data of the connections of a member's hash m, in
// the order they opened.
func connsOf(m map[string]string) [][]byte {
	if len(m) == 0 {
		return nil
	}
	fields := make([]string, 0, len(m))
	for f := range m {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	out := make([][]byte, len(fields))
	for j, f := range fields {
		if v := m[f]; v != "" {
			out[j] = []byte(v)
		}
	}
	return out
}

// decodeData decodes an event's data: each connection's as its length, a
// colon and its bytes (enter.lua).
func decodeData(d string) ([][]byte, bool) {
	var out [][]byte
	for d != "" {
		colon := strings.IndexByte(d, ':')
		if colon < 0 {
			return nil, false
		}
		n, err := strconv.Atoi(d[:colon])
		if err != nil || n < 0 || n > len(d)-colon-1 {
			return nil, false
		}
		var v []byte
		if n > 0 {
			v = []byte(d[colon+1 : colon+1+n])
		}
		out = append(out, v)
		d = d[colon+1+n:]
	}
	return out, true
}
