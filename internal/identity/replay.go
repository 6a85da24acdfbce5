package identity

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Replay cache classifications.
var (
	// ErrReplayed: the key has been claimed before and has not expired.
	ErrReplayed = errors.New("token already used")
	// ErrReplayCacheFull: the cache holds its maximum of unexpired keys and
	// cannot remember another; the token must be refused (fail closed).
	ErrReplayCacheFull = errors.New("replay cache full")
)

// ReplayCache remembers which tokens have been used.
//
// Claim is an atomic check-and-insert: for a given key, of any number of
// concurrent and sequential calls made while the key is remembered, exactly
// one returns nil and every other returns an error wrapping ErrReplayed. A
// key is remembered until exp, inclusive; afterwards it may be claimed
// again. A cache that cannot remember a new key returns an error wrapping
// ErrReplayCacheFull and the caller refuses the token. Any other error is a
// failure of the cache itself; the caller refuses the token as well.
//
// Durability is the implementation's to state. MemoryReplayCache forgets
// everything when the process ends; the gateway restores it with Seed from
// its audit log, so every Claim that returns nil must be followed by an
// audit entry carrying the token's issuer, jti and expiry.
type ReplayCache interface {
	Claim(key string, exp time.Time) error
}

var _ ReplayCache = (*MemoryReplayCache)(nil)

// ReplayKey is the replay cache key of a token: its issuer and jti,
// length-prefixed so that no two (iss, jti) pairs share a key.
func ReplayKey(iss, jti string) string {
	return strconv.Itoa(len(iss)) + ":" + iss + ":" + jti
}

// DefaultReplayCacheSize is the bound used when NewMemoryReplayCache is
// given maxKeys < 1. At the default 5-minute lifetime plus 60s skew it holds
// the tokens of a sustained ~1,450 verifications per second.
const DefaultReplayCacheSize = 1 << 19

// shrinkFloor: below this high-water mark the cache never reallocates.
const shrinkFloor = 1024

// MemoryReplayCache is a bounded in-memory ReplayCache. Safe for concurrent
// use.
//
// Design: one mutex over a map (key → expiry) and a min-heap of (expiry,
// key). Each Claim or Seed first pops the expired entries off the heap;
// every entry is pushed and popped once, so sweeping costs amortised
// O(log n) per key and the cache never holds expired keys for longer than
// the next call. When sweeping has brought the live count below a quarter
// of its high-water mark the map and heap are reallocated, because Go maps
// never give memory back; that is O(n) once per 4x shrink, amortised O(1).
// A single lock is enough: the work under it is a map lookup and a heap
// push (well under a microsecond) while each verification spends tens of
// microseconds on the signature, so contention stays negligible; and one
// lock keeps the bound exact, where shards would each hold a slice of it
// and could report full while others had room.
//
// Keys are held as digests: the first 16 bytes of SHA-256(key), and
// expiries as Unix nanoseconds, so that the map and the heap hold no
// pointer and the garbage collector never scans them (a busy gateway
// remembers hundreds of thousands of tokens: as strings they were a
// large part of the live heap every collection marked). Two keys with one
// digest (a 2^-64 chance among 2^32 keys) would refuse the second token
// as a replay: a false refusal, never a missed replay.
type MemoryReplayCache struct {
	now func() time.Time
	max int

	mu   sync.Mutex
	seen map[replayDigest]int64 // digest → expiry, Unix nanoseconds
	heap expiryHeap
	peak int // high-water mark of len(seen) since the last reallocation
}

// NewMemoryReplayCache returns a cache holding at most maxKeys unexpired
// keys (DefaultReplayCacheSize when maxKeys < 1) on the clock now (time.Now
// when nil).
func NewMemoryReplayCache(now func() time.Time, maxKeys int) *MemoryReplayCache {
	if now == nil {
		now = time.Now
	}
	if maxKeys < 1 {
		maxKeys = DefaultReplayCacheSize
	}
	return &MemoryReplayCache{now: now, max: maxKeys, seen: map[replayDigest]int64{}}
}

// Claim implements ReplayCache. A key whose exp has already passed is not
// remembered (there is nothing left to protect) and Claim returns nil. A
// key already remembered is reported as ErrReplayed even when the cache is
// full.
func (c *MemoryReplayCache) Claim(key string, exp time.Time) error {
	d := digestOf(key)
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweepLocked(now)
	if _, used := c.seen[d]; used {
		return ErrReplayed
	}
	if exp.Before(now) {
		return nil
	}
	if len(c.seen) >= c.max {
		return ErrReplayCacheFull
	}
	c.insertLocked(d, exp.UnixNano())
	return nil
}

// replayDigest is a key as the cache holds it.
type replayDigest [16]byte

func digestOf(key string) replayDigest {
	sum := sha256.Sum256([]byte(key))
	return replayDigest(sum[:16])
}

// Seed marks key as used until exp, as if it had been claimed: the gateway
// calls it at start-up for every audit entry whose token has not yet
// expired. A key already present keeps the later of its two expiries; a key
// whose exp has passed is ignored. Seed is not bounded by maxKeys, because
// forgetting a used token would let it be replayed: if the log holds more
// live tokens than the bound, Claim reports full until enough have expired.
func (c *MemoryReplayCache) Seed(key string, exp time.Time) {
	d := digestOf(key)
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweepLocked(now)
	if exp.Before(now) {
		return
	}
	if cur, ok := c.seen[d]; ok && exp.UnixNano() <= cur {
		return
	}
	c.insertLocked(d, exp.UnixNano())
}

// Len returns the number of keys remembered and not yet expired.
func (c *MemoryReplayCache) Len() int {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweepLocked(now)
	return len(c.seen)
}

func (c *MemoryReplayCache) insertLocked(key replayDigest, exp int64) {
	c.seen[key] = exp
	c.heap.push(expiryEntry{exp: exp, key: key})
	c.peak = max(c.peak, len(c.seen))
}

// sweepLocked forgets every key whose expiry is before now, and gives
// memory back once the cache has shrunk to a quarter of its peak.
func (c *MemoryReplayCache) sweepLocked(now time.Time) {
	t := now.UnixNano()
	for len(c.heap) > 0 && c.heap[0].exp < t {
		e := c.heap.pop()
		// A key re-seeded with a later expiry has a newer heap entry; this
		// stale one must not delete it.
		if cur, ok := c.seen[e.key]; ok && cur == e.exp {
			delete(c.seen, e.key)
		}
	}
	if c.peak >= shrinkFloor && len(c.seen) < c.peak/4 {
		seen := make(map[replayDigest]int64, len(c.seen))
		for k, v := range c.seen {
			seen[k] = v
		}
		c.seen = seen
		c.heap = append(make(expiryHeap, 0, len(c.heap)), c.heap...)
		c.peak = len(c.seen)
	}
}

type expiryEntry struct {
	exp int64 // Unix nanoseconds
	key replayDigest
}

// expiryHeap is a binary min-heap ordered by exp (typed, to avoid
// container/heap's boxing of every element).
type expiryHeap []expiryEntry

func (h *expiryHeap) push(e expiryEntry) {
	*h = append(*h, e)
	s := *h
	for i := len(s) - 1; i > 0; {
		parent := (i - 1) / 2
		if s[i].exp >= s[parent].exp {
			break
		}
		s[i], s[parent] = s[parent], s[i]
		i = parent
	}
}

func (h *expiryHeap) pop() expiryEntry {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	s.down(0)
	*h = s
	return top
}

// down moves element i down to its place.
func (h expiryHeap) down(i int) {
	for {
		l, r, least := 2*i+1, 2*i+2, i
		if l < len(h) && h[l].exp < h[least].exp {
			least = l
		}
		if r < len(h) && h[r].exp < h[least].exp {
			least = r
		}
		if least == i {
			return
		}
		h[i], h[least] = h[least], h[i]
		i = least
	}
}

// init makes h a heap in O(len(h)), as container/heap.Init.
func (h expiryHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

// Snapshot writes every key remembered and not yet expired, with its
// expiry, to w (a count, then per key its 16-byte digest and the expiry
// in Unix nanoseconds, little-endian), so that a restart can Restore them
// instead of re-reading the audit log (internal/app/replaystate.go). It
// returns the number of keys written.
func (c *MemoryReplayCache) Snapshot(w io.Writer) (int, error) {
	now := c.now()
	c.mu.Lock()
	c.sweepLocked(now)
	buf := binary.LittleEndian.AppendUint64(make([]byte, 0, 8+len(c.seen)*snapshotEntry), uint64(len(c.seen)))
	for k, exp := range c.seen {
		buf = append(buf, k[:]...)
		buf = binary.LittleEndian.AppendUint64(buf, uint64(exp))
	}
	n := len(c.seen)
	c.mu.Unlock()
	_, err := w.Write(buf)
	return n, err
}

// snapshotEntry is the size of one key in a Snapshot.
const snapshotEntry = len(replayDigest{}) + 8

// Restore seeds the cache (as Seed does, unbounded) with the keys of a
// Snapshot and returns how many it read. Malformed input is an error;
// the keys read before it stay seeded. It takes the lock once and builds
// the expiry heap in one pass, so that a restart restores a few hundred
// thousand keys in tens of milliseconds.
func (c *MemoryReplayCache) Restore(b []byte) (int, error) {
	if len(b) < 8 {
		return 0, errors.New("replay snapshot: too short")
	}
	n := binary.LittleEndian.Uint64(b)
	b = b[8:]
	if uint64(len(b)) != n*uint64(snapshotEntry) || n > uint64(len(b)) {
		return 0, errors.New("replay snapshot: its length does not match its count")
	}
	now := c.now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweepLocked(time.Unix(0, now))
	if len(c.seen) == 0 {
		c.seen = make(map[replayDigest]int64, n)
		c.heap = slices.Grow(c.heap[:0], int(n))
	}
	defer func() {
		c.heap.init()
		c.peak = max(c.peak, len(c.seen))
	}()
	for i := range int(n) {
		e := b[i*snapshotEntry:]
		key := replayDigest(e[:16])
		exp := int64(binary.LittleEndian.Uint64(e[16:]))
		if exp < now {
			continue
		}
		if cur, ok := c.seen[key]; ok && exp <= cur {
			continue
		}
		c.seen[key] = exp
		c.heap = append(c.heap, expiryEntry{exp: exp, key: key})
	}
	return int(n), nil
}
