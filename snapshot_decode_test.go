package presence

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSnapshotRecordLimits reads files whose checksums are right but whose
// second record breaks one of the decoder's rules. Each is refused for that
// rule, leaving the engine empty, and the same record just inside the limit
// loads. (The truncation and bit-flip sweeps cannot reach these checks: the
// checksums refuse those files first.)
func TestSnapshotRecordLimits(t *testing.T) {
	ns := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC).UnixNano()
	for _, tc := range []struct {
		name       string
		ns         int64
		id, meta   string
		undercount bool // the block declares one record fewer than it holds
		rooms      []roomTime
		err        string // "" for a file that loads
	}{
		{"longest ID", ns, strings.Repeat("i", MaxIDLen), "", false, nil, ""},
		{"ID too long", ns, strings.Repeat("i", MaxIDLen+1), "", false, nil, "ID length 513"},
		{"longest meta", ns, "u", strings.Repeat("m", MaxMetaLen), false, nil, ""},
		{"meta too long", ns, "u", strings.Repeat("m", MaxMetaLen+1), false, nil, "meta length 1025"},
		{"empty ID", ns, "", "", false, nil, "empty ID"},
		{"oldest time", minNano, "u", "", false, nil, ""},
		{"time too old", minNano - 1, "u", "", false, nil, "out of range"},
		{"newest time", maxNano - 1, "u", "", false, nil, ""},
		{"the time that marks a held user", maxNano, "u", "", false, nil, "out of range"},
		{"time too new", maxNano + 1, "u", "", false, nil, "out of range"},
		{"bytes after the last record", ns, "u", "", true, nil, "5 bytes after the last record"},
		{"a room", ns, "u", "", false, []roomTime{{"r", ns - 1}}, ""},
		{"longest room name", ns, "u", "", false, []roomTime{{strings.Repeat("r", MaxIDLen), ns}}, ""},
		{"room name too long", ns, "u", "", false, []roomTime{{strings.Repeat("r", MaxIDLen+1), ns}}, "room length 513"},
		{"room name not UTF-8", ns, "u", "", false, []roomTime{{"\xff", ns}}, "bad room name"},
		{"room name with NUL", ns, "u", "", false, []roomTime{{"a\x00", ns}}, "bad room name"},
		{"oldest time in a room", ns, "u", "", false, []roomTime{{"r", minNano}}, ""},
		{"time in a room too old", ns, "u", "", false, []roomTime{{"r", minNano - 1}}, "bad time in room"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			sw := newSnapWriter(&buf)
			sw.record(ns, "first", "", nil)
			sw.record(tc.ns, tc.id, tc.meta, tc.rooms)
			if tc.undercount {
				sw.count--
			}
			_, err := sw.finish()
			require.NoError(t, err)
			e := New(WithShards(1))
			_, err = e.ReadFrom(&buf)
			if tc.err == "" {
				require.NoError(t, err)
				assert.Equal(t, 2, e.Len())
				assert.Equal(t, len(tc.rooms), e.Stats().Memberships)
				return
			}
			require.ErrorIs(t, err, ErrCorruptSnapshot)
			assert.ErrorContains(t, err, tc.err)
			assert.Equal(t, 0, e.Len())
		})
	}
}
