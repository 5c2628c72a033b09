package presence_test

import (
	"os"
	"path/filepath"
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
			presence.WithSnapshotErrorHandler(func(err error) { errs = append(errs, err) }))
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
