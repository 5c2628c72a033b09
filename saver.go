package presence

import (
	"sync"
	"time"
)

const defaultEvery = time.Minute

// openConfig is what [Open] is configured with: the engine's options and
// the snapshot file's.
type openConfig struct {
	config
	every               time.Duration
	startEmptyOnCorrupt bool
	onError             func(error)
}

// fileOption is an option of the snapshot file, which only Open takes.
type fileOption func(*openConfig)

func (o fileOption) applyOpen(c *openConfig) { o(c) }

// WithSnapshotInterval sets how often an engine made by [Open] saves its
// snapshot (default one minute; d <= 0 selects the default). A save is
// skipped when nothing changed since the last one and no one is held (a
// held user is saved as seen at each save, so that after a crash its time
// on disk is at most one interval old).
func WithSnapshotInterval(d time.Duration) OpenOption {
	if d <= 0 {
		d = defaultEvery
	}
	return fileOption(func(c *openConfig) { c.every = d })
}

// WithStartEmptyOnCorrupt makes [Open] start with an empty engine when the
// snapshot file is corrupt, instead of returning the error. Either way the
// corrupt file is first renamed to "<path>.corrupt-<unix seconds>", so that
// the next save does not destroy what an operator may want to inspect.
func WithStartEmptyOnCorrupt() OpenOption {
	return fileOption(func(c *openConfig) { c.startEmptyOnCorrupt = true })
}

// WithErrorHandler sets a function that [Open]'s background saver
// calls with each failed save (and with the corrupt-file error that
// WithStartEmptyOnCorrupt passed over). It must not block for long. Errors
// are counted in [Stats] either way; the engine keeps serving.
func WithErrorHandler(f func(error)) OpenOption {
	return fileOption(func(c *openConfig) { c.onError = f })
}

// saver is the background work of an engine made by Open: a goroutine that
// saves the snapshot every interval while anything changed.
type saver struct {
	path      string
	onError   func(error)
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (e *Engine) saveLoop(every time.Duration) {
	defer close(e.saver.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-e.saver.stop:
			return
		case <-t.C:
			e.saveIfDirty()
		}
	}
}

// close stops the loop and saves what changed since its last save; only its
// first call does anything.
func (sv *saver) close(e *Engine) (err error) {
	sv.closeOnce.Do(func() {
		close(sv.stop)
		<-sv.done
		err = e.saveIfDirty()
	})
	return err
}

// saveIfDirty saves when anything changed since the last save, or while
// anyone is held: a held user is saved as seen at the save, so its time on
// disk grows with each one. The flag is cleared first, so a change made
// during the save is saved next time.
func (e *Engine) saveIfDirty() error {
	if !e.dirty.Swap(false) && e.holding.Load() == 0 {
		return nil
	}
	err := e.SaveFile(e.saver.path)
	if err != nil {
		e.dirty.Store(true)
		if e.log != nil {
			e.log.Error("presence: snapshot save failed", "path", e.saver.path, "err", err)
		}
		e.saver.report(err)
	} else if e.log != nil {
		e.log.Debug("presence: snapshot saved", "path", e.saver.path, "bytes", e.snapBytes.Load())
	}
	return err
}

func (sv *saver) report(err error) {
	if sv.onError != nil {
		sv.onError(err)
	}
}
