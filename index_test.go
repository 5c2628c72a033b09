package presence

import (
	"math"
	"math/rand/v2"
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
				key := l.key(ns, n)
				it := item{key: key}
				require.Equal(t, slotOf(ns, l.res), l.slot(it), "res %v, ns %d", res, ns)
				require.Equal(t, int64(n), key&(1<<idLenBits-1))
				step := key >> idLenBits & (1<<l.stepBits - 1)
				require.Less(t, step, int64(1)<<l.stepBits)
				if end := l.end(key); l.slot(it) < slotOf(maxNano, l.res) {
					require.Greater(t, end, ns, "res %v, ns %d", res, ns)
					require.LessOrEqual(t, end-ns, int64(res))
				}
				if ns < maxNano {
					require.LessOrEqual(t, key, l.key(ns+1, n), "keys grow with time")
				}
				require.LessOrEqual(t, l.bound(l.slot(it)).key, key)
			}
		}
		assert.True(t, l.bound(math.MinInt64).key <= l.key(minNano, 1) && l.key(maxNano, MaxIDLen) < l.bound(math.MaxInt64).key,
			"bounds for everything enclose every key at %v", res)
	}
}
