package presence_test

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/onlinenow/presence"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// everything returns all users, newest first, with meta.
func everything(e *presence.Engine) []presence.Activity {
	all, _ := e.Page(time.Time{}, presence.Cursor{}, 0)
	return all
}

func snapshotOf(t testing.TB, e *presence.Engine) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := e.WriteTo(&buf)
	require.NoError(t, err)
	require.Equal(t, int64(buf.Len()), n)
	return buf.Bytes()
}

func loaded(t testing.TB, snap []byte, opts ...presence.Option) *presence.Engine {
	t.Helper()
	e := presence.New(opts...)
	n, err := e.ReadFrom(bytes.NewReader(snap))
	require.NoError(t, err)
	require.Equal(t, int64(len(snap)), n)
	return e
}

func TestSnapshotRoundTrip(t *testing.T) {
	big := 1_000_000
	if testing.Short() {
		big = 50_000
	}
	edge := []time.Time{
		time.Date(1679, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Unix(0, 0),
		time.Date(2261, 12, 31, 0, 0, 0, 0, time.UTC),
	}
	cases := map[string]func(e *presence.Engine){
		"empty": func(*presence.Engine) {},
		"one":   func(e *presence.Engine) { e.TouchAt("solo", t0) },
		"edges": func(e *presence.Engine) {
			for i, at := range edge {
				e.TouchAt(fmt.Sprint("edge", i), at)
			}
			e.TouchAt(strings.Repeat("L", presence.MaxIDLen), t0)
			e.TouchAt("ünïcødé-用户-🙂", t0.Add(time.Nanosecond))
			e.TouchAt("\x00\xff binary", t0.Add(-time.Nanosecond))
			e.SetMeta("ünïcødé-用户-🙂", "203.0.113.7 Mozilla/5.0")
			e.SetMeta(strings.Repeat("L", presence.MaxIDLen), strings.Repeat("m", presence.MaxMetaLen))
		},
		"many": func(e *presence.Engine) {
			rng := rand.New(rand.NewPCG(5, 5))
			for i := range big {
				e.TouchAt(fmt.Sprint("user-", i), t0.Add(-time.Duration(rng.Int64N(int64(48*time.Hour)))))
				if i%1000 == 0 {
					e.SetMeta(fmt.Sprint("user-", i), fmt.Sprint("meta", i))
				}
			}
		},
		// Touched twice in one slot: filed by the first touch, restored by
		// the second, so the order within the slot may differ.
		"retouched": func(e *presence.Engine) {
			for i := range 1000 {
				e.TouchAt(fmt.Sprint("user-", i), t0.Add(time.Duration(i)*time.Millisecond))
			}
			for i := range 500 {
				e.TouchAt(fmt.Sprint("user-", i), t0.Add(time.Duration(999-i/4)*time.Millisecond))
			}
		},
	}
	for name, fill := range cases {
		t.Run(name, func(t *testing.T) {
			e := presence.New(presence.WithShards(4))
			fill(e)
			snap := snapshotOf(t, e)
			// A different shard count and resolution read it just as well.
			back := loaded(t, snap, presence.WithShards(16))
			require.Equal(t, e.Len(), back.Len())
			if name == "retouched" {
				require.ElementsMatch(t, everything(e), everything(back))
				assert.Equal(t, e.Count(time.Hour), back.Count(time.Hour))
			} else {
				require.Equal(t, everything(e), everything(back))
			}
			if name == "many" {
				perRecord := float64(len(snap)) / float64(big)
				t.Logf("%d users: %d bytes, %.1f bytes/record", big, len(snap), perRecord)
			}
		})
	}
}

// TestCursorAcrossRestart pages half way through an engine, restores its
// snapshot into a new engine and pages on with the same cursor: no user
// comes twice, and every user touched once (whose place the restore keeps)
// that the first half had not reached comes in the second. Users touched
// twice in a slot are restored at their last time, which may put them
// ahead of the cursor, like a touch between pages.
func TestCursorAcrossRestart(t *testing.T) {
	e := presence.New(presence.WithShards(4))
	once := map[string]bool{}
	for i := range 3000 {
		id := fmt.Sprint("u", i)
		e.TouchAt(id, t0.Add(time.Duration(i%7)*time.Second+time.Duration(i)*time.Microsecond))
		once[id] = true
	}
	for i := 0; i < 3000; i += 5 { // later in the same slot
		id := fmt.Sprint("u", i)
		e.TouchAt(id, t0.Add(time.Duration(i%7)*time.Second+900*time.Millisecond))
		delete(once, id)
	}
	seen := map[string]bool{}
	var cur presence.Cursor
	for range 10 {
		page, next := e.Page(time.Time{}, cur, 150)
		for _, a := range page {
			seen[a.ID] = true
		}
		cur = next
	}
	require.False(t, cur.IsZero())
	text, err := cur.MarshalText()
	require.NoError(t, err)

	back := loaded(t, snapshotOf(t, e), presence.WithShards(8))
	var resumed presence.Cursor
	require.NoError(t, resumed.UnmarshalText(text))
	for {
		page, next := back.Page(time.Time{}, resumed, 150)
		for _, a := range page {
			require.False(t, seen[a.ID], "%s returned again after the restart", a.ID)
			seen[a.ID] = true
		}
		if next.IsZero() {
			break
		}
		resumed = next
	}
	for id := range once {
		assert.True(t, seen[id], "%s, touched once, was skipped", id)
	}
}

// TestReadFromWhileChurning merges a snapshot on several goroutines while
// others touch and forget the same users: a merge probes the map for a
// batch of records before merging them, so a user may be forgotten or added
// in between. The engine must stay consistent, and a last quiet merge must
// leave every user of the file at least as recent as the file says.
func TestReadFromWhileChurning(t *testing.T) {
	src := presence.New()
	for i := range 5000 {
		src.TouchAt(fmt.Sprint("u", i), t0.Add(-time.Duration(i)*time.Second))
	}
	snap := snapshotOf(t, src)
	e := presence.New(presence.WithShards(4))
	var wg sync.WaitGroup
	for range 2 { // mergers
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				_, err := e.ReadFrom(bytes.NewReader(snap))
				assert.NoError(t, err)
			}
		}()
	}
	for g := range 2 { // churners
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 11))
			for range 20_000 {
				id := fmt.Sprint("u", rng.IntN(5000))
				switch rng.IntN(3) {
				case 0:
					e.Forget(id)
				case 1:
					e.TouchAt(id, t0.Add(-time.Duration(rng.IntN(10000))*time.Second))
				default:
					e.SetMeta(id, "m")
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, presence.CheckInvariants(e))
	_, err := e.ReadFrom(bytes.NewReader(snap))
	require.NoError(t, err)
	require.NoError(t, presence.CheckInvariants(e))
	for _, a := range everything(src) {
		got, ok := e.LastSeen(a.ID)
		require.True(t, ok, a.ID)
		assert.False(t, got.Before(a.LastSeen), a.ID)
	}
}

func TestSnapshotMergeCommutes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	a, b := presence.New(), presence.New()
	for i := range 5000 {
		id := fmt.Sprint("u", rng.IntN(3000)) // overlapping users
		at := t0.Add(-time.Duration(rng.IntN(100)) * time.Second)
		side := a
		if rng.IntN(2) == 0 {
			side = b
		}
		side.TouchAt(id, at)
		if i%3 == 0 {
			side.SetMeta(id, fmt.Sprint("m", rng.IntN(4)))
		}
	}
	sa, sb := snapshotOf(t, a), snapshotOf(t, b)
	ab := loaded(t, sa)
	_, err := ab.ReadFrom(bytes.NewReader(sb))
	require.NoError(t, err)
	ba := loaded(t, sb)
	_, err = ba.ReadFrom(bytes.NewReader(sa))
	require.NoError(t, err)
	assert.Equal(t, everything(ab), everything(ba))
	// Under a cap, too, where about 20 users share each second and the
	// cap falls among users of one time.
	for _, limit := range []int{1, 7, 1000} {
		ab := loaded(t, sa, presence.WithMaxUsers(limit))
		_, err := ab.ReadFrom(bytes.NewReader(sb))
		require.NoError(t, err)
		ba := loaded(t, sb, presence.WithMaxUsers(limit))
		_, err = ba.ReadFrom(bytes.NewReader(sa))
		require.NoError(t, err)
		assert.Equal(t, everything(ab), everything(ba), "WithMaxUsers(%d)", limit)
		assert.Equal(t, limit, ab.Len())
	}
	// And the merge holds each user's newest time.
	for _, u := range everything(ab) {
		la, oka := a.LastSeen(u.ID)
		lb, okb := b.LastSeen(u.ID)
		want := la
		if !oka || (okb && lb.After(la)) {
			want = lb
		}
		assert.True(t, want.Equal(u.LastSeen), u.ID)
	}
}

// TestSnapshotOrder checks that WriteTo writes records newest slot first
// across its shards, and that a file in any other order (ascending,
// interleaved runs, repeated IDs) loads to the same state: the newest time
// of each user wins.
func TestSnapshotOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	src := presence.New(presence.WithShards(16))
	for i := range 5000 {
		src.TouchAt(fmt.Sprint("u", i), t0.Add(-time.Duration(rng.IntN(1e6))*time.Millisecond))
	}
	times, err := presence.SnapshotTimes(bytes.NewReader(snapshotOf(t, src)))
	require.NoError(t, err)
	assert.Len(t, times, 5000)
	assert.True(t, slices.IsSortedFunc(times, func(a, b int64) int { return bySecond(b, a) }), "newest slot first")

	for _, order := range []string{"ascending", "interleaved"} {
		t.Run(order, func(t *testing.T) {
			var recs []presence.Activity
			want := map[string]time.Time{}
			for i := range 3000 {
				at := t0.Add(time.Duration(i) * time.Second)
				if order == "interleaved" {
					at = t0.Add(time.Duration(i%1000) * time.Second) // restarts twice
				}
				id := fmt.Sprint("u", rng.IntN(1500)) // some IDs several times
				recs = append(recs, presence.Activity{ID: id, LastSeen: at})
				if at.After(want[id]) {
					want[id] = at
				}
			}
			var buf bytes.Buffer
			_, err := presence.EncodeSnapshot(&buf, recs)
			require.NoError(t, err)
			e := loaded(t, buf.Bytes(), presence.WithShards(4))
			got := map[string]time.Time{}
			for _, a := range everything(e) {
				got[a.ID] = a.LastSeen
			}
			assert.Equal(t, want, got)
			require.NoError(t, presence.CheckInvariants(e))
		})
	}
}

func bySecond(a, b int64) int { return cmp.Compare(a/1e9, b/1e9) }

func TestSnapshotRespectsRetentionAndCap(t *testing.T) {
	clk := newClock()
	src := presence.New()
	for i := range 100 {
		src.TouchAt(fmt.Sprint(i), t0.Add(-time.Duration(i)*time.Minute))
	}
	snap := snapshotOf(t, src)

	withRetention := loaded(t, snap, presence.WithClock(clk.Now), presence.WithRetention(30*time.Minute))
	assert.Equal(t, 31, withRetention.Len(), "users idle up to 30 minutes")
	assert.Equal(t, uint64(31), withRetention.Stats().Inserted, "expired records are passed over, not inserted")

	capped := loaded(t, snap, presence.WithMaxUsers(10))
	assert.Equal(t, 10, capped.Len())
	for _, a := range everything(capped) {
		n, _ := strconv.Atoi(a.ID)
		assert.Less(t, n, 10, "the ten most recent survive")
	}
	require.NoError(t, presence.CheckInvariants(capped))

	// A file that fits under the cap is merged by the parallel workers; the
	// cap's count of users must come out exact.
	for _, limit := range []int{100, 1000} {
		roomy := loaded(t, snap, presence.WithMaxUsers(limit))
		assert.Equal(t, everything(src), everything(roomy))
		require.NoError(t, presence.CheckInvariants(roomy))
		roomy.TouchAt("one more", t0)
		assert.Equal(t, min(101, limit), roomy.Len())
	}

	// Into a full engine: newer records push out older users, and records
	// older than everyone held are passed over.
	full := presence.New(presence.WithMaxUsers(10))
	for i := range 10 {
		full.TouchAt(fmt.Sprint("old", i), t0.Add(-time.Duration(50+i)*time.Minute))
	}
	_, err := full.ReadFrom(bytes.NewReader(snap))
	require.NoError(t, err)
	var ids []string
	for _, a := range everything(full) {
		ids = append(ids, a.ID)
	}
	assert.Equal(t, []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}, ids)
}

// smallSnapshot is a valid file of a few blocks' worth of records.
func smallSnapshot(t testing.TB) []byte {
	e := presence.New()
	for i := range 20 {
		e.TouchAt(fmt.Sprint("user-", i), t0.Add(time.Duration(i)*time.Second))
	}
	e.SetMeta("user-3", "meta")
	e.TouchInAt("doc", "user-3", t0)
	e.TouchInAt("doc", "user-5", t0.Add(5*time.Second))
	e.TouchInAt("chat", "user-5", t0.Add(time.Second))
	return snapshotOf(t, e)
}

func TestSnapshotTruncationSweep(t *testing.T) {
	snap := smallSnapshot(t)
	for n := range len(snap) {
		e := presence.New()
		e.TouchAt("keep", t0)
		_, err := e.ReadFrom(bytes.NewReader(snap[:n]))
		require.ErrorIs(t, err, presence.ErrCorruptSnapshot, "prefix of %d bytes", n)
		require.Equal(t, []string{"keep"}, ids(everything(e)), "a refused file changes nothing")
	}
}

func TestSnapshotBitFlipSweep(t *testing.T) {
	snap := smallSnapshot(t)
	for i := range len(snap) * 8 {
		bad := bytes.Clone(snap)
		bad[i/8] ^= 1 << (i % 8)
		e := presence.New()
		_, err := e.ReadFrom(bytes.NewReader(bad))
		require.Error(t, err, "flip of bit %d", i)
		require.True(t, errors.Is(err, presence.ErrCorruptSnapshot) || errors.Is(err, presence.ErrSnapshotVersion), "bit %d: %v", i, err)
		require.Zero(t, e.Len())
	}
}

func TestSnapshotDistinctErrors(t *testing.T) {
	snap := smallSnapshot(t)
	badMagic := bytes.Clone(snap)
	copy(badMagic, "NOTASNAP")
	flipped := bytes.Clone(snap)
	flipped[40] ^= 0x10
	tests := []struct {
		name string
		data []byte
		is   error
		msg  string
	}{
		{"empty", nil, presence.ErrCorruptSnapshot, "empty file"},
		{"truncated", snap[:len(snap)-3], presence.ErrCorruptSnapshot, "truncated"},
		{"bad magic", badMagic, presence.ErrCorruptSnapshot, "bad magic"},
		{"flipped bit", flipped, presence.ErrCorruptSnapshot, "checksum mismatch"},
		{"future version", withVersion(snap, 3), presence.ErrSnapshotVersion, "version 3"},
		{"version 0", withVersion(snap, 0), presence.ErrSnapshotVersion, "version 0"},
		{"trailing data", append(bytes.Clone(snap), 0), presence.ErrCorruptSnapshot, "after the trailer"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := presence.New().ReadFrom(bytes.NewReader(tt.data))
			require.ErrorIs(t, err, tt.is)
			assert.Contains(t, err.Error(), tt.msg)
			assert.False(t, seen[err.Error()], "each fault has its own message")
			seen[err.Error()] = true
		})
	}
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }

// withVersion rewrites a snapshot's version and fixes the header checksum,
// as a newer build would write it.
func withVersion(snap []byte, v uint16) []byte {
	out := bytes.Clone(snap)
	out[8], out[9] = byte(v), byte(v>>8)
	sum := crc32c(out[:12])
	out[12], out[13], out[14], out[15] = byte(sum), byte(sum>>8), byte(sum>>16), byte(sum>>24)
	return out
}

func TestSnapshotHostileLengths(t *testing.T) {
	header := smallSnapshot(t)[:16]
	le32 := func(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }
	le64 := func(v uint64) []byte { return append(le32(uint32(v)), le32(uint32(v>>32))...) }

	// A trailer declaring 2^62 records, padded to 100 bytes.
	manyRecords := append(bytes.Clone(header), le32(0xFFFFFFFF)...)
	manyRecords = append(manyRecords, le64(1<<62)...)
	manyRecords = append(manyRecords, make([]byte, 100-len(manyRecords))...)

	// A well-formed block whose one record declares a 2^32-byte ID.
	payload := []byte{0}                                    // time delta
	payload = append(payload, 0x80, 0x80, 0x80, 0x80, 0x10) // uvarint 2^32
	payload = append(payload, "xyz"...)
	countAndPayload := append(le32(1), payload...)
	hugeID := append(bytes.Clone(header), le32(uint32(len(payload)))...)
	hugeID = append(hugeID, countAndPayload...)
	hugeID = append(hugeID, le32(crc32c(countAndPayload))...)

	// A block header declaring the largest block, with 80 bytes behind it.
	bigBlock := append(bytes.Clone(header), le32(1<<20)...)
	bigBlock = append(bigBlock, le32(1000)...)
	bigBlock = append(bigBlock, make([]byte, 80)...)

	for name, data := range map[string][]byte{"2^62 records": manyRecords, "2^32-byte ID": hugeID, "1 MiB block": bigBlock} {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err := presence.New(presence.WithShards(1)).ReadFrom(bytes.NewReader(data))
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			require.ErrorIs(t, err, presence.ErrCorruptSnapshot)
			t.Logf("%v in %v", err, elapsed)
			// The engine itself allocates its counters; measure the read.
			assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(16<<10)+engineBaseBytes(), "allocation stays at a few KiB")
		})
	}
}

// engineBaseBytes is what New(WithShards(1)) allocates before any read.
func engineBaseBytes() uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	e := presence.New(presence.WithShards(1))
	e.TouchAt("x", t0) // the counters are allocated on first use
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(e)
	return after.TotalAlloc - before.TotalAlloc
}

func TestForgetHonouredBySnapshot(t *testing.T) {
	e := presence.New()
	e.TouchAt("secret-user-4711", t0)
	e.TouchAt("other", t0)
	require.Contains(t, string(snapshotOf(t, e)), "secret-user-4711")
	e.Forget("secret-user-4711")
	assert.NotContains(t, string(snapshotOf(t, e)), "secret-user-4711")
}

// TestExpiredLeftOutOfSnapshot: a user retention has expired, but that no
// write has removed yet, is not written. The clock moves between touches so
// that no write could expire the user early (a write expires users of its
// shard, which the other user may share).
func TestExpiredLeftOutOfSnapshot(t *testing.T) {
	clk := newClock()
	e := presence.New(presence.WithClock(clk.Now), presence.WithRetention(time.Hour))
	e.Touch("expired-user-4711")
	clk.Advance(50 * time.Minute)
	e.Touch("recent")
	clk.Advance(20 * time.Minute) // the first is 70 minutes idle, the second 20
	require.Equal(t, 1, e.Len())
	require.Equal(t, uint64(0), e.Stats().Expired, "nothing has removed it yet")
	snap := snapshotOf(t, e)
	assert.NotContains(t, string(snap), "expired-user-4711")
	back := loaded(t, snap)
	assert.Equal(t, 1, back.Len())
	_, ok := back.Get("recent")
	assert.True(t, ok)
}

func TestSaveFileAtomicAndPrivate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "presence.snap")
	old := syscall.Umask(0o277) // would leave the owner without write
	defer syscall.Umask(old)

	e := presence.New()
	e.TouchAt("a", t0)
	require.NoError(t, e.SaveFile(path))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o600), fi.Mode().Perm())
	first, _ := os.ReadFile(path)

	// A save that cannot complete (the target became a non-empty directory
	// in a second place) leaves no temporary file behind.
	blocked := filepath.Join(dir, "blocked")
	require.NoError(t, os.MkdirAll(filepath.Join(blocked, "x"), 0o700))
	e.TouchAt("b", t0)
	require.Error(t, e.SaveFile(blocked))
	assert.Equal(t, uint64(1), e.Stats().SnapshotErrors)
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, de := range entries {
		names = append(names, de.Name())
	}
	assert.ElementsMatch(t, []string{"presence.snap", "blocked"}, names)
	again, _ := os.ReadFile(path)
	assert.Equal(t, first, again, "the previous file is intact")

	require.NoError(t, e.SaveFile(path))
	back := presence.New()
	require.NoError(t, back.LoadFile(path))
	assert.Equal(t, 2, back.Len())
	assert.Equal(t, uint64(2), e.Stats().SnapshotsSaved)
}

func TestOpen(t *testing.T) {
	t.Run("missing file is a fresh start", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "s")
		e, err := presence.Open(path)
		require.NoError(t, err)
		assert.Zero(t, e.Len())
		e.TouchAt("a", t0)
		require.NoError(t, e.Close())
		require.NoError(t, e.Close(), "idempotent")
		back, err := presence.Open(path)
		require.NoError(t, err)
		assert.Equal(t, 1, back.Len(), "Close wrote a final snapshot")
		require.NoError(t, back.Close())
	})
	t.Run("not a regular file", func(t *testing.T) {
		dir := t.TempDir()
		fifo := filepath.Join(dir, "fifo")
		require.NoError(t, syscall.Mkfifo(fifo, 0o600))
		for _, path := range []string{fifo, dir} {
			_, err := presence.Open(path) // a FIFO would block a plain open
			require.ErrorIs(t, err, presence.ErrNotRegular, path)
			assert.NotErrorIs(t, err, presence.ErrCorruptSnapshot)
			fi, err := os.Lstat(path)
			require.NoError(t, err)
			assert.False(t, fi.Mode().IsRegular(), "left in place")
		}
		assert.ErrorIs(t, presence.New().LoadFile(fifo), presence.ErrNotRegular)
	})
	t.Run("corrupt file is moved aside", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "s")
		snap := smallSnapshot(t)
		require.NoError(t, os.WriteFile(path, snap[:len(snap)/2], 0o600))
		_, err := presence.Open(path)
		require.ErrorIs(t, err, presence.ErrCorruptSnapshot)
		matches, _ := filepath.Glob(path + ".corrupt-*")
		require.Len(t, matches, 1)
		kept, _ := os.ReadFile(matches[0])
		assert.Equal(t, snap[:len(snap)/2], kept)

		require.NoError(t, os.WriteFile(path, []byte("garbage"), 0o600))
		var reported []error
		e, err := presence.Open(path, presence.WithStartEmptyOnCorrupt(),
			presence.WithErrorHandler(func(err error) { reported = append(reported, err) }))
		require.NoError(t, err)
		assert.Zero(t, e.Len())
		require.Len(t, reported, 1)
		assert.ErrorIs(t, reported[0], presence.ErrCorruptSnapshot)
		require.NoError(t, e.Close())
	})
	t.Run("unknown version is left in place", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "s")
		newer := withVersion(smallSnapshot(t), 9)
		require.NoError(t, os.WriteFile(path, newer, 0o600))
		_, err := presence.Open(path, presence.WithStartEmptyOnCorrupt())
		require.ErrorIs(t, err, presence.ErrSnapshotVersion)
		kept, _ := os.ReadFile(path)
		assert.Equal(t, newer, kept)
	})
	t.Run("stale temporary files are removed", func(t *testing.T) {
		// Names with glob metacharacters: "[1]" as a pattern would match
		// "1", and "*" anything.
		for name, lookalike := range map[string]string{"s": "unrelated", "state [1]": "state 1", "a*b?": "a-long-b!"} {
			dir := t.TempDir()
			path := filepath.Join(dir, name)
			stale := path + ".tmp-12345"
			require.NoError(t, os.WriteFile(stale, []byte("half a save"), 0o600))
			other := filepath.Join(dir, lookalike+".tmp-1")
			require.NoError(t, os.WriteFile(other, nil, 0o600))
			e, err := presence.Open(path)
			require.NoError(t, err)
			require.NoError(t, e.Close())
			assert.NoFileExists(t, stale, name)
			assert.FileExists(t, other, name)
		}
	})
}

func TestSnapshotWhileTouching(t *testing.T) {
	const perG = 20_000
	e := presence.New(presence.WithShards(4))
	var wg sync.WaitGroup
	var touched [8]atomic.Int64 // per goroutine: users 0..n-1 are in
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perG {
				e.TouchAt(fmt.Sprintf("g%d-%d", g, i), t0.Add(time.Duration(i)*time.Millisecond))
				touched[g].Store(int64(i + 1))
			}
		}()
	}
	for range 6 {
		var before [8]int64
		for g := range before {
			before[g] = touched[g].Load()
		}
		back := loaded(t, snapshotOf(t, e))
		// Every user touched before the snapshot began is in it.
		for g, n := range before {
			for i := range n {
				_, ok := back.Get(fmt.Sprintf("g%d-%d", g, i))
				require.True(t, ok, "g%d-%d was touched before the snapshot began", g, i)
			}
		}
	}
	wg.Wait()
}

// TestCrashSafety kills a process that saves in a loop, at random moments,
// and checks that the file then loads as one of the completed saves.
func TestCrashSafety(t *testing.T) {
	if dir := os.Getenv("PRESENCE_CRASH_DIR"); dir != "" {
		crashHelper(dir)
		return
	}
	if testing.Short() {
		t.Skip("re-executes the test binary 50 times")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "crash.snap")
	rng := rand.New(rand.NewPCG(9, 9))
	for kill := range 50 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashSafety$")
		cmd.Env = append(os.Environ(), "PRESENCE_CRASH_DIR="+dir)
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		lines := bufio.NewScanner(out)
		last := -1
		for range 1 + rng.IntN(4) {
			if !lines.Scan() {
				break
			}
			last, _ = strconv.Atoi(strings.TrimPrefix(lines.Text(), "saved "))
		}
		time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond) // a random moment, maybe mid-save
		require.NoError(t, cmd.Process.Kill())
		cmd.Wait()

		e, err := presence.Open(path)
		require.NoError(t, err, "kill %d", kill)
		n := e.Len()
		// The state of save k is the users of rounds 0..k.
		require.Zero(t, n%crashRound, "kill %d: %d users is not a completed save", kill, n)
		k := n/crashRound - 1
		require.GreaterOrEqual(t, k, last, "kill %d: an acknowledged save was lost", kill)
		for _, r := range []int{0, k} {
			ls, ok := e.LastSeen(fmt.Sprintf("r%d-%d", r, crashRound-1))
			require.True(t, ok, "kill %d: round %d", kill, r)
			require.True(t, ls.Equal(t0.Add(time.Duration(r)*time.Second)))
		}
		require.NoError(t, e.Close())
		matches, _ := filepath.Glob(path + ".tmp-*")
		require.Empty(t, matches, "Open removed the interrupted save's file")
		os.Remove(path) // each helper starts from round 0
	}
}

const crashRound = 5000

func crashHelper(dir string) {
	e := presence.New()
	w := bufio.NewWriter(os.Stdout)
	for r := 0; ; r++ {
		for i := range crashRound {
			e.TouchAt(fmt.Sprintf("r%d-%d", r, i), t0.Add(time.Duration(r)*time.Second))
		}
		if err := e.SaveFile(filepath.Join(dir, "crash.snap")); err != nil {
			panic(err)
		}
		fmt.Fprintf(w, "saved %d\n", r)
		w.Flush()
	}
}

// TestExpectedUsers checks that WithExpectedUsers sizes the map up front,
// that it never shrinks below that, and that Open, which sizes the map for
// the snapshot it loads, keeps the larger of the two.
func TestExpectedUsers(t *testing.T) {
	const want = 100_000
	plain := presence.MapCapacity(presence.New())
	require.Less(t, plain, want, "the default map starts small")
	assert.Equal(t, plain, presence.MapCapacity(presence.New(presence.WithExpectedUsers(-5))))

	e := presence.New(presence.WithExpectedUsers(want))
	assert.GreaterOrEqual(t, presence.MapCapacity(e), want)
	for i := range 1000 {
		e.TouchAt(fmt.Sprint("u", i), t0)
	}
	for i := range 1000 {
		require.True(t, e.Forget(fmt.Sprint("u", i)))
	}
	assert.GreaterOrEqual(t, presence.MapCapacity(e), want, "never shrinks below the hint")
	e.TouchAt("a", t0)
	got, ok := e.LastSeen("a")
	require.True(t, ok)
	assert.Equal(t, t0, got)

	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	require.NoError(t, os.WriteFile(small, smallSnapshot(t), 0o600))
	opened, err := presence.Open(small, presence.WithExpectedUsers(want))
	require.NoError(t, err)
	assert.GreaterOrEqual(t, presence.MapCapacity(opened), want, "Open keeps the hint over a smaller snapshot")
	n := opened.Len()
	require.NotZero(t, n)
	require.NoError(t, opened.Close())

	big := presence.New()
	for i := range 3 * plain {
		big.TouchAt(fmt.Sprint("v", i), t0)
	}
	path := filepath.Join(dir, "big")
	require.NoError(t, big.SaveFile(path))
	reopened, err := presence.Open(path, presence.WithExpectedUsers(10))
	require.NoError(t, err)
	assert.GreaterOrEqual(t, presence.MapCapacity(reopened), 3*plain, "Open sizes for the snapshot over a smaller hint")
	assert.Equal(t, 3*plain, reopened.Len())
	require.NoError(t, reopened.Close())
}

// TestRestoreRepeats pins the rules for a user that one file holds several
// records of, read as Open reads it, the records in ten shuffled orders: the
// newest time wins with its meta, even none; at one time, the larger meta.
func TestRestoreRepeats(t *testing.T) {
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for _, tc := range []struct {
		name string
		recs []presence.Activity
		want presence.Activity
	}{
		{"newer wins", []presence.Activity{{ID: "u", LastSeen: at(1), Meta: "a"}, {ID: "u", LastSeen: at(5), Meta: "b"}, {ID: "u", LastSeen: at(3), Meta: "c"}}, presence.Activity{ID: "u", LastSeen: at(5), Meta: "b"}},
		{"newer without meta", []presence.Activity{{ID: "u", LastSeen: at(1), Meta: "a"}, {ID: "u", LastSeen: at(9), Meta: ""}}, presence.Activity{ID: "u", LastSeen: at(9), Meta: ""}},
		{"tie: larger meta", []presence.Activity{{ID: "u", LastSeen: at(2), Meta: "b"}, {ID: "u", LastSeen: at(2), Meta: ""}, {ID: "u", LastSeen: at(2), Meta: "c"}, {ID: "u", LastSeen: at(2), Meta: "a"}}, presence.Activity{ID: "u", LastSeen: at(2), Meta: "c"}},
		{"tie lost to a newer", []presence.Activity{{ID: "u", LastSeen: at(2), Meta: "z"}, {ID: "u", LastSeen: at(2), Meta: "y"}, {ID: "u", LastSeen: at(4), Meta: ""}}, presence.Activity{ID: "u", LastSeen: at(4), Meta: ""}},
		{"same slot", []presence.Activity{{ID: "u", LastSeen: t0.Add(10), Meta: "a"}, {ID: "u", LastSeen: t0.Add(20), Meta: ""}, {ID: "u", LastSeen: t0.Add(15), Meta: "c"}}, presence.Activity{ID: "u", LastSeen: t0.Add(20), Meta: ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			perm := rand.New(rand.NewPCG(1, 1))
			for range 10 {
				recs := slices.Clone(tc.recs)
				perm.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
				var buf bytes.Buffer
				_, err := presence.EncodeSnapshot(&buf, recs)
				require.NoError(t, err)
				e, err := presence.Restore(&buf)
				require.NoError(t, err)
				got, ok := e.Get("u")
				require.True(t, ok)
				want := tc.want
				want.LastSeen = want.LastSeen.UTC()
				assert.Equal(t, want, got, "order %v", recs)
				assert.Equal(t, 1, e.Len())
				require.NoError(t, presence.CheckInvariants(e))
			}
		})
	}
}

// TestLargestStateLoads builds the largest user each option allows (the
// longest ID and meta, in as many rooms as the cap allows, every name of
// the longest length) and saves it; the next Open loads all of it. Without
// a cap a user in 3,000 such rooms makes 1.5 MB of memberships, more than
// the reader takes in one block: the writer splits it.
func TestLargestStateLoads(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opt   presence.Option
		rooms int
	}{
		{"default cap", presence.WithMaxRoomsPerUser(0), presence.DefaultMaxRoomsPerUser},
		{"no cap", presence.WithMaxRoomsPerUser(-1), 3000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := t0
			clock := presence.WithClock(func() time.Time { return now })
			path := filepath.Join(t.TempDir(), "big.snap")
			e, err := presence.Open(path, clock, tc.opt)
			require.NoError(t, err)
			id := strings.Repeat("u", presence.MaxIDLen)
			meta := strings.Repeat("m", presence.MaxMetaLen)
			room := func(i int) string { return fmt.Sprintf("%0*d", presence.MaxIDLen, i) }
			for i := range tc.rooms + 10 { // the ten oldest leave for the cap, if there is one
				e.TouchInAt(room(i), id, t0.Add(time.Duration(i)*time.Millisecond))
			}
			require.True(t, e.SetMeta(id, meta))
			e.TouchAt("small", t0)
			want := e.RoomsOf(id)
			if tc.rooms == presence.DefaultMaxRoomsPerUser {
				require.Len(t, want, tc.rooms, "the default cap holds")
			} else {
				require.Len(t, want, tc.rooms+10)
			}
			require.NoError(t, e.Close())

			back, err := presence.Open(path, clock, tc.opt)
			require.NoError(t, err, "the engine loads what it saved")
			defer back.Close()
			got, ok := back.Get(id)
			require.True(t, ok)
			assert.Equal(t, meta, got.Meta)
			assert.Equal(t, t0.Add(time.Duration(tc.rooms+9)*time.Millisecond), got.LastSeen)
			assert.Equal(t, want, back.RoomsOf(id))
			assert.Equal(t, 2, back.Len())
			last, ok := back.Room(room(tc.rooms + 9)).LastSeen(id)
			require.True(t, ok)
			assert.Equal(t, got.LastSeen, last)
		})
	}
}
