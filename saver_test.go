package presence_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/onlinenow/presence"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The saver runs on a fake clock inside a synctest bubble: time moves only
// when every goroutine in the bubble is blocked, so nothing sleeps.
func TestPeriodicSaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "s")
		var errs []error
		e, err := presence.Open(path, presence.WithSnapshotInterval(time.Minute),
			presence.WithErrorHandler(func(err error) { errs = append(errs, err) }))
		require.NoError(t, err)

		time.Sleep(time.Minute + time.Second) // one tick, nothing changed
		synctest.Wait()
		assert.Zero(t, e.Stats().SnapshotsSaved, "an unchanged engine is not saved")
		assert.NoFileExists(t, path)

		e.TouchAt("a", t0)
		time.Sleep(time.Minute)
		synctest.Wait()
		assert.Equal(t, uint64(1), e.Stats().SnapshotsSaved)
		back := presence.New()
		require.NoError(t, back.LoadFile(path))
		assert.Equal(t, 1, back.Len())

		e.TouchAt("a", t0.Add(time.Nanosecond)) // a same-slot touch is a change too
		time.Sleep(time.Minute)
		synctest.Wait()
		assert.Equal(t, uint64(2), e.Stats().SnapshotsSaved)

		// A failing save is reported and counted, and the engine serves on.
		require.NoError(t, os.Remove(path))
		require.NoError(t, os.MkdirAll(filepath.Join(path, "x"), 0o700))
		e.TouchAt("b", t0)
		time.Sleep(time.Minute)
		synctest.Wait()
		assert.Equal(t, uint64(1), e.Stats().SnapshotErrors)
		require.Len(t, errs, 1)
		assert.Equal(t, 2, e.Len())

		// Once the path is usable again the next tick saves what failed.
		require.NoError(t, os.RemoveAll(path))
		time.Sleep(time.Minute)
		synctest.Wait()
		assert.Equal(t, uint64(3), e.Stats().SnapshotsSaved)

		e.TouchAt("c", t0)
		require.NoError(t, e.Close(), "stops the saver and writes the last change")
		back = presence.New()
		require.NoError(t, back.LoadFile(path))
		assert.Equal(t, 3, back.Len())

		// An engine just loaded holds nothing new: neither a tick nor Close
		// writes the file again.
		again, err := presence.Open(path, presence.WithSnapshotInterval(time.Minute))
		require.NoError(t, err)
		assert.Equal(t, 3, again.Len())
		time.Sleep(time.Minute + time.Second)
		synctest.Wait()
		require.NoError(t, again.Close())
		assert.Zero(t, again.Stats().SnapshotsSaved)
	})
}

// TestHeldUsersSaved: while a user is held, every tick saves it as seen at
// that tick, though nothing else changes, and Close writes it as seen at
// the close; a membership held in a room too. Reading the file between
// ticks is what a restart after kill -9 would load.
func TestHeldUsersSaved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "s")
		e, err := presence.Open(path, presence.WithSnapshotInterval(time.Minute))
		require.NoError(t, err)
		start := time.Now()
		release := e.HoldIn("doc", "h")
		for tick := 1; tick <= 3; tick++ {
			time.Sleep(time.Minute)
			synctest.Wait()
			time.Sleep(time.Second) // within the next interval: "killed" here
			back := presence.New()
			require.NoError(t, back.LoadFile(path))
			ls, ok := back.LastSeen("h")
			require.True(t, ok)
			assert.Equal(t, start.Add(time.Duration(tick)*time.Minute).UTC(), ls, "tick %d: held as seen at the last save", tick)
			inRoom, ok := back.Room("doc").LastSeen("h")
			require.True(t, ok)
			assert.Equal(t, ls, inRoom)
			assert.LessOrEqual(t, time.Since(ls), time.Minute, "at most one interval old")
		}
		assert.Equal(t, uint64(3), e.Stats().SnapshotsSaved)
		time.Sleep(10 * time.Second)
		require.NoError(t, e.Close())
		back := presence.New()
		require.NoError(t, back.LoadFile(path))
		ls, _ := back.LastSeen("h")
		assert.Equal(t, time.Now().UTC(), ls, "Close writes the held user as seen at the close")
		release()

		// Released, the user is saved once more (the release is a change),
		// then no more.
		again, err := presence.Open(path, presence.WithSnapshotInterval(time.Minute))
		require.NoError(t, err)
		again.Hold("g")()
		time.Sleep(3*time.Minute + time.Second)
		synctest.Wait()
		assert.Equal(t, uint64(1), again.Stats().SnapshotsSaved)
		require.NoError(t, again.Close())
	})
}

// TestHeldUserAfterKill holds a user in a child process that saves every
// 300ms, kills it with SIGKILL after a few saves, and loads what it left:
// the held user's time is about one interval old, not the hold's start.
func TestHeldUserAfterKill(t *testing.T) {
	if path := os.Getenv("PRESENCE_HELD_FILE"); path != "" {
		heldHelper(path)
		return
	}
	if testing.Short() {
		t.Skip("runs a child process for a few seconds")
	}
	path := filepath.Join(t.TempDir(), "held.snap")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHeldUserAfterKill$")
	cmd.Env = append(os.Environ(), "PRESENCE_HELD_FILE="+path)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer cmd.Process.Kill()
	// The hold, then seven saves, or four seconds if saves do not come.
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(4 * time.Second)
	var started time.Time
wait:
	for n := 0; n < 8; n++ {
		select {
		case line, ok := <-lines:
			if !ok {
				break wait
			}
			if n == 0 {
				ns, err := strconv.ParseInt(strings.TrimPrefix(line, "held "), 10, 64)
				require.NoError(t, err, line)
				started = time.Unix(0, ns)
			}
		case <-deadline:
			break wait
		}
	}
	require.False(t, started.IsZero(), "the child held no one")
	killed := time.Now()
	require.NoError(t, cmd.Process.Signal(os.Kill))
	cmd.Wait()
	go func() {
		for range lines { // the reader's last lines
		}
	}()
	e := presence.New()
	require.NoError(t, e.LoadFile(path))
	ls, ok := e.LastSeen("h")
	require.True(t, ok)
	t.Logf("killed %v after the hold; on disk %v old", killed.Sub(started), killed.Sub(ls))
	require.Greater(t, killed.Sub(started), 2*time.Second, "seven saves take 2.1s")
	// One interval, plus a save's time and the pipe's delay on a busy
	// machine; the hold's start would be over 2s old.
	assert.Less(t, killed.Sub(ls), time.Second, "a held user's time on disk is about one interval old")
}

// heldHelper holds "h" in an engine saving every 300ms and prints a line
// at the hold and at each save, until killed.
func heldHelper(path string) {
	e, err := presence.Open(path, presence.WithSnapshotInterval(300*time.Millisecond))
	if err != nil {
		panic(err)
	}
	e.Hold("h")
	fmt.Printf("held %d\n", time.Now().UnixNano())
	for saved := uint64(0); ; {
		if n := e.Stats().SnapshotsSaved; n != saved {
			saved = n
			fmt.Printf("saved %d\n", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
