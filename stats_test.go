package presence_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/onlinenow/presence"
)

// TestStatsTouches counts touches from many goroutines: every valid call of
// each kind once, invalid IDs and unusable times not at all; without
// WithTouchCount nothing is counted, and Stats says so.
func TestStatsTouches(t *testing.T) {
	plain := presence.New()
	plain.Touch("a")
	assert.Equal(t, uint64(0), plain.Stats().Touches)
	assert.False(t, plain.Stats().TouchesCounted)

	e := presence.New(presence.WithTouchCount())
	defer e.Close()
	const workers, each = 8, 1000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprint("u", (w*each+i)%300)
				switch i % 4 {
				case 0:
					e.Touch(id)
				case 1:
					e.TouchAt(id, t0.Add(time.Duration(i)))
				case 2:
					e.TouchIn("room", id)
				case 3:
					e.TouchInAt("room", id, t0)
				}
			}
		}()
	}
	wg.Wait()
	e.Touch("")                 // invalid ID
	e.TouchAt("x", time.Time{}) // unusable time
	e.Hold("h")()               // a hold records a touch
	st := e.Stats()
	assert.Equal(t, uint64(workers*each+1), st.Touches)
	assert.True(t, st.TouchesCounted)
	assert.Equal(t, uint64(1), st.RejectedIDs)
}

func TestStatsSnapshotsAndEvents(t *testing.T) {
	dir := t.TempDir()
	e := presence.New()
	defer e.Close()
	st := e.Stats()
	assert.True(t, st.LastSnapshot.IsZero())
	assert.Zero(t, st.LastSnapshotBytes)

	for i := range 100 {
		e.TouchAt(fmt.Sprint("u", i), t0)
	}
	before := time.Now()
	path := filepath.Join(dir, "s")
	require.NoError(t, e.SaveFile(path))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	st = e.Stats()
	assert.Equal(t, uint64(1), st.SnapshotsSaved)
	assert.Equal(t, fi.Size(), st.LastSnapshotBytes)
	assert.False(t, st.LastSnapshot.Before(before))
	assert.Positive(t, st.SnapshotTime)

	// A failing save counts its time and error, and keeps the last good one.
	require.Error(t, e.SaveFile(filepath.Join(dir, "missing", "s")))
	st2 := e.Stats()
	assert.Equal(t, uint64(1), st2.SnapshotErrors)
	assert.Equal(t, st.LastSnapshot, st2.LastSnapshot)
	assert.Equal(t, st.LastSnapshotBytes, st2.LastSnapshotBytes)
	assert.GreaterOrEqual(t, st2.SnapshotTime, st.SnapshotTime)

	synctest.Test(t, func(t *testing.T) {
		e := presence.New()
		defer e.Close()
		slow, fast := e.Subscribe(2), e.Subscribe(100)
		for i := range 10 {
			e.Touch(fmt.Sprint("u", i))
		}
		st := e.Stats()
		assert.Equal(t, 2, st.Subscribers)
		assert.Equal(t, uint64(10), st.Events, "each event once, not once per subscriber")
		assert.Equal(t, uint64(8), st.EventsDropped)
		slow.Close()
		fast.Close()
		assert.Zero(t, e.Stats().Subscribers)
		assert.Equal(t, uint64(8), e.Stats().EventsDropped, "losses stay counted after Close")
	})
}

// TestLogger: the saver logs a failed save with its path at Error and a
// good one at Debug, the sweeper logs lost events at Warn, and without
// WithLogger nothing reaches any logger, the default one included.
func TestLogger(t *testing.T) {
	var def bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&def, &slog.HandlerOptions{Level: slog.LevelDebug})))
	defer slog.SetDefault(old)

	run := func(t *testing.T, opts ...presence.OpenOption) {
		synctest.Test(t, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s")
			e, err := presence.Open(path, append([]presence.OpenOption{presence.WithSnapshotInterval(time.Minute)}, opts...)...)
			require.NoError(t, err)
			e.Touch("a")
			time.Sleep(time.Minute)
			synctest.Wait() // saved
			require.NoError(t, os.Remove(path))
			require.NoError(t, os.MkdirAll(filepath.Join(path, "x"), 0o700))
			e.Touch("b")
			time.Sleep(time.Minute)
			synctest.Wait() // failed
			sub := e.Subscribe(1)
			for i := range 5 {
				e.Touch(fmt.Sprint("c", i))
			}
			time.Sleep(2 * time.Second)
			synctest.Wait() // swept
			sub.Close()
			require.NoError(t, os.RemoveAll(path))
			require.NoError(t, e.Close())
		})
	}

	var buf bytes.Buffer
	run(t, presence.WithLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	logs := buf.String()
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	var saved, failed, lost int
	for _, l := range lines {
		switch {
		case strings.Contains(l, "level=DEBUG") && strings.Contains(l, `msg="presence: snapshot saved"`):
			saved++
			assert.Contains(t, l, "path=")
		case strings.Contains(l, "level=ERROR") && strings.Contains(l, `msg="presence: snapshot save failed"`):
			failed++
			assert.Contains(t, l, "path=")
			assert.Contains(t, l, "err=")
		case strings.Contains(l, "level=WARN") && strings.Contains(l, "lost events"):
			lost++
			assert.Contains(t, l, "lost=4")
		}
	}
	assert.Equal(t, 2, saved, logs) // the first tick and Close
	assert.Equal(t, 1, failed, logs)
	assert.Equal(t, 1, lost, logs)

	def.Reset()
	run(t)
	assert.Empty(t, def.String(), "no WithLogger: nothing logged")
}
