package main

import (
	"math/rand/v2"
	"unsafe"
)

// keys picks which user each operation touches, the same sequence for the
// same seed. Safe for use by one goroutine.
type keys struct {
	users int
	rng   *rand.Rand
	zipf  *rand.Zipf // nil: uniform
	buf   [20]byte
}

func newKeys(users int, dist string, skew float64, seed uint64) *keys {
	k := &keys{users: users, rng: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))}
	if dist == "zipf" {
		k.zipf = rand.NewZipf(k.rng, skew, 1, uint64(users-1))
	}
	return k
}

// next returns the index of the next user.
func (k *keys) next() int {
	if k.zipf == nil {
		return k.rng.IntN(k.users)
	}
	// Scatter the popular ranks over the users, so that the popular ones
	// are not neighbours in the engine's or the map's memory.
	r := k.zipf.Uint64()
	return int((r * 0x9e3779b97f4a7c15) % uint64(k.users))
}

// id formats user n's ID into the keys' buffer: "u" and the decimal number.
// The string aliases the buffer, as an ID just parsed from a request would;
// it is valid until the next call, and the peers copy what they keep.
func (k *keys) id(n int) string {
	i := len(k.buf)
	for {
		i--
		k.buf[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	i--
	k.buf[i] = 'u'
	return unsafe.String(&k.buf[i], len(k.buf)-i)
}
