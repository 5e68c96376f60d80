package redisstream

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"
)

// NewID returns a ULID: 48 bits of Unix milliseconds and 80 random bits in
// Crockford base32 (26 characters). Ids made by one process sort in the
// order they were made, even within one millisecond, because the random
// part is incremented instead of redrawn (the ULID monotonic variant); ids
// from different processes sort by time to the millisecond. Event ids use
// it (time-sortable, docs/design.md) and so do job ids chosen by the queue.
func NewID() string { return ids.next(time.Now()) }

var ids idGen

type idGen struct {
	mu     sync.Mutex
	lastMs uint64
	rnd    [10]byte
}

func (g *idGen) next(now time.Time) string {
	ms := uint64(now.UnixMilli())
	g.mu.Lock()
	if ms <= g.lastMs {
		ms = g.lastMs // a clock step backwards keeps the order
		for i := len(g.rnd) - 1; i >= 0; i-- {
			g.rnd[i]++
			if g.rnd[i] != 0 {
				break
			}
		}
	} else {
		g.lastMs = ms
		_, _ = rand.Read(g.rnd[:])
		g.rnd[0] &= 0x7f // room to increment without overflowing the millisecond
	}
	var b [16]byte
	binary.BigEndian.PutUint16(b[0:2], uint16(ms>>32))
	binary.BigEndian.PutUint32(b[2:6], uint32(ms))
	copy(b[6:], g.rnd[:])
	g.mu.Unlock()
	return encodeULID(b)
}

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

func encodeULID(b [16]byte) string {
	var out [26]byte
	hi := binary.BigEndian.Uint64(b[0:8])
	lo := binary.BigEndian.Uint64(b[8:16])
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
