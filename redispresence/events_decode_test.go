package redispresence

import (
	"strconv"
	"testing"
	"time"

	"github.com/onlinenow/presence"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzEventOf feeds the stream entry decoder entries of any shape (another
// writer's, an older version's, a hostile one): it must never panic, must
// refuse any kind it does not know or time it cannot read, and must decode
// what the scripts write.
func FuzzEventOf(f *testing.F) {
	f.Add("online", "u1", "", "1796580000000000", "1")
	f.Add("leave", "u1", "doc", "1796580000000000", "7")
	f.Add("left", "", "r", "-1", "x")
	f.Add("gone", "u", "", "1796580000000000", "3")
	f.Add("offline", "u", "", "9223372036854775807", "")
	f.Add("what", "u", "", "1", "1")
	e := &events{window: time.Minute.Microseconds()}
	// Fields missing, or of another type.
	_, ok := e.eventOf(redis.XMessage{Values: map[string]any{"k": 1}})
	assert.False(f, ok)
	assert.Equal(f, int64(-1), seqOf(redis.XMessage{Values: map[string]any{}}))
	f.Fuzz(func(t *testing.T, kind, id, room, at, q string) {
		m := redis.XMessage{ID: "1-0", Values: map[string]any{"k": kind, "id": id, "r": room, "at": at, "q": q}}
		ev, ok := e.eventOf(m)
		us, err := strconv.ParseInt(at, 10, 64)
		known := map[string]presence.EventKind{"online": presence.Online, "join": presence.Join,
			"offline": presence.Offline, "leave": presence.Leave, "left": presence.Leave, "gone": presence.Offline}[kind]
		require.Equal(t, err == nil && known != 0, ok, "decoded %q", kind)
		if !ok {
			return
		}
		assert.Equal(t, known, ev.Kind)
		assert.Equal(t, id, ev.ID)
		assert.Equal(t, room, ev.Room)
		if kind == "offline" || kind == "leave" {
			us += e.window // the end of the window, found by the sweeper
		}
		assert.Equal(t, us, ev.At.UnixMicro())
	})
}
