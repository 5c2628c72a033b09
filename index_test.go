package presence

import (
	"math"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLayoutKeys checks the packing of item keys at several resolutions and
// across the whole range of accepted times: the slot survives the packing,
// the filing step stays in its bits, keys grow with time, and a key's slot
// end lies after its time (except for the very last slot, whose end wraps).
func TestLayoutKeys(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, res := range []time.Duration{minResolution, 7 * time.Millisecond, time.Second, time.Minute, maxResolution} {
		l := newLayout(int64(res))
		times := []int64{minNano, minNano + 1, -int64(res), -1, 0, 1, int64(res) - 1, int64(res), maxNano - 1, maxNano}
		for range 2000 {
			times = append(times, int64(rng.Uint64()))
		}
		for _, ns := range times {
			if ns < minNano || ns > maxNano {
				continue
			}
			for _, n := range []int{1, 13, MaxIDLen} {
				id := strings.Repeat("x", n)
				key := l.key(ns, id)
				it := item{key: key}
				require.Equal(t, slotOf(ns, l.res), l.slot(it), "res %v, ns %d", res, ns)
				require.Equal(t, int64(n), key&(1<<idLenBits-1))
				step := key >> (idLenBits + l.tieBits) & (1<<l.stepBits - 1)
				require.Equal(t, l.slot(it), key>>(idLenBits+l.tieBits+l.stepBits), "the step stays in its bits")
				// step = floor(offset * 2^stepBits / res), exactly.
				off := new(big.Int).Lsh(big.NewInt(ns-slotOf(ns, l.res)*int64(res)), l.stepBits)
				require.Equal(t, off.Div(off, big.NewInt(int64(res))).Int64(), step, "the step is the time's")
				if end := l.end(key); l.slot(it) < slotOf(maxNano, l.res) {
					require.Greater(t, end, ns, "res %v, ns %d", res, ns)
					require.LessOrEqual(t, end-ns, int64(res))
				}
				if ns < maxNano {
					require.LessOrEqual(t, key, l.key(ns+1, id), "keys grow with time")
				}
				require.LessOrEqual(t, l.bound(l.slot(it)).key, key)
			}
		}
		assert.True(t, l.bound(math.MinInt64).key <= l.key(minNano, "x") && l.key(maxNano, strings.Repeat("x", MaxIDLen)) < l.bound(math.MaxInt64).key,
			"bounds for everything enclose every key at %v", res)
	}
}

// TestUnixNanoBounds pins the first and last accepted times: the seconds
// of minNano and maxNano themselves are refused, so no accepted time, with
// any nanoseconds, leaves [minNano, maxNano].
func TestUnixNanoBounds(t *testing.T) {
	const sec = int64(time.Second)
	for _, tc := range []struct {
		t  time.Time
		ok bool
	}{
		{time.Unix(minNano/sec, sec-1), false},
		{time.Unix(minNano/sec+1, 0), true},
		{time.Unix(maxNano/sec-1, sec-1), true},
		{time.Unix(maxNano/sec, 0), false},
	} {
		ns, ok := unixNano(tc.t)
		require.Equal(t, tc.ok, ok, "%v", tc.t)
		if ok {
			assert.Equal(t, tc.t.UnixNano(), ns)
			assert.True(t, minNano <= ns && ns <= maxNano, "%v", tc.t)
		}
		e := New()
		e.TouchAt("u", tc.t)
		_, held := e.Get("u")
		assert.Equal(t, tc.ok, held, "%v", tc.t)
	}
}
