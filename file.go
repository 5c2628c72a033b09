package presence

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// SaveFile writes a snapshot to path atomically: to a new temporary file in
// the same directory (mode 0600 whatever the umask), synced, then renamed over
// path, and the directory synced. On any error the temporary file is removed
// and the previous file at path is left as it was.
func (e *Engine) SaveFile(path string) (err error) {
	start := time.Now()
	var size int64
	dir, base := splitPath(path)
	f, err := os.CreateTemp(dir, base+tempSuffix+"*")
	defer func() {
		end := time.Now()
		e.snapNanos.Add(int64(end.Sub(start)))
		if err != nil {
			if f != nil {
				f.Close()
				os.Remove(f.Name())
			}
			err = fmt.Errorf("presence: save %s: %w", path, err)
			e.snapErrors.Add(1)
		} else {
			e.snapBytes.Store(size)
			e.snapLast.Store(end.UnixNano())
			e.snapSaves.Add(1)
		}
	}()
	if err != nil {
		return err
	}
	if err = f.Chmod(0o600); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	if size, err = e.WriteTo(bw); err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	f = nil // renamed: nothing to remove
	if d, derr := os.Open(dir); derr == nil {
		derr = d.Sync()
		d.Close()
		if derr != nil {
			return fmt.Errorf("sync directory: %w", derr)
		}
	}
	return nil
}

// tempSuffix follows the name of a save's temporary file: "<name>.tmp-<random>".
const tempSuffix = ".tmp-"

func splitPath(path string) (dir, base string) {
	dir, base = filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	return dir, base
}

// LoadFile merges the snapshot at path into the engine, as ReadFrom.
func (e *Engine) LoadFile(path string) error { return e.loadFile(path, false) }

func (e *Engine) loadFile(path string, unpublished bool) error {
	// Opening a FIFO for reading waits for a writer, and a device or a
	// directory is no snapshot: refuse them at once.
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("presence: load %s: %w (%v)", path, ErrNotRegular, fi.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("presence: load: %w", err)
	}
	defer f.Close()
	if _, err := e.readFrom(f, unpublished); err != nil {
		return fmt.Errorf("presence: load %s: %w", path, err)
	}
	return nil
}

// Open returns an engine configured by opts that persists itself at path. It
// removes temporary files left by an interrupted save, loads path if it
// exists (a missing file is a fresh start), then saves every
// [WithSnapshotInterval] in the background, skipping saves when nothing
// changed and no one is held. [Engine.Close] stops the saver and writes a final snapshot.
//
// A corrupt file is renamed to "<path>.corrupt-<unix seconds>" and Open
// returns the error wrapping [ErrCorruptSnapshot], unless
// [WithStartEmptyOnCorrupt] was given. A file of an unknown version is left
// in place and Open returns the error wrapping [ErrSnapshotVersion]: saving
// over it would destroy data a newer build wrote. A path that names
// something other than a regular file (a directory, a FIFO, a device) is
// left alone and Open fails at once with an error wrapping [ErrNotRegular].
func Open(path string, opts ...OpenOption) (*Engine, error) {
	c := openConfig{every: defaultEvery}
	for _, o := range opts {
		o.applyOpen(&c)
	}
	e := newEngine(c.config)
	e.saver = &saver{path: path, onError: c.onError, stop: make(chan struct{}), done: make(chan struct{})}
	dir, base := splitPath(path)
	glob := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `\`, `\\`).Replace(base + tempSuffix)
	if stale, err := filepath.Glob(filepath.Join(dir, glob+"*")); err == nil {
		for _, name := range stale {
			os.Remove(name)
		}
	}
	err := e.loadFile(path, true)
	switch {
	case err == nil, errors.Is(err, fs.ErrNotExist):
	case errors.Is(err, ErrCorruptSnapshot):
		aside := fmt.Sprintf("%s.corrupt-%d", path, e.now().Unix())
		if rerr := os.Rename(path, aside); rerr != nil {
			return nil, fmt.Errorf("%w (and moving it aside failed: %v)", err, rerr)
		}
		err = fmt.Errorf("%w; moved to %s", err, aside)
		if !c.startEmptyOnCorrupt {
			return nil, err
		}
		if e.log != nil {
			e.log.Error("presence: snapshot corrupt, starting empty", "path", path, "moved_to", aside, "err", err)
		}
		e.saver.report(err)
	default:
		return nil, err
	}
	e.dirty.Store(false)
	go e.saveLoop(c.every)
	return e, nil
}
