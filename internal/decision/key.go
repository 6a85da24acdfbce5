package decision

import (
	"cmp"
	"encoding/binary"
	"hash/maphash"
	"slices"
	"sort"
	"sync"

	"github.com/childrens-trust/trustgate/internal/policy"
)

// Breakpoints are the instants a decision's time is compared with in the
// policy's data (protocol periods) and literally in the policy.
func Breakpoints(rev *policy.Revision, a *Analysis) []int64 {
	var b []int64
	for _, p := range rev.Data().Protocols {
		b = append(b, p.EffectiveFromNS, p.ExpiresNS)
	}
	b = append(b, a.Literals...)
	slices.Sort(b)
	return slices.Compact(b)
}

// Place says where t falls among the sorted instants b: how many are
// before it and how many equal it. It fixes the outcome of every
// comparison of t with any of them.
func Place(b []int64, t int64) (lo, eq int) {
	lo = sort.Search(len(b), func(i int) bool { return b[i] >= t })
	eq = sort.Search(len(b)-lo, func(i int) bool { return b[lo+i] > t })
	return lo, eq
}

// Key is the memo key of in under analysis a and breakpoints breaks: every field the policy may read except the
// time, and the time's place among the revision's breakpoints. A
// consent's instants enter the key as their relations to the time and to
// zero when the policy compares them with nothing else (otherwise as
// they are, with the time's place among them), and consent ids by rank
// when the policy treats identifiers as opaque.
func Key(a *Analysis, breaks []int64, in *policy.Input) string {
	var b keyBuilder
	lo, eq := Place(breaks, in.TimeNS)
	b.int(int64(lo))
	b.int(int64(eq))
	if !a.ConsentTimes {
		var cb []int64
		for _, c := range in.Consents {
			cb = append(cb, c.ValidFromNS, c.ValidUntilNS, c.WithdrawnNS)
		}
		slices.Sort(cb)
		lo, eq = Place(slices.Compact(cb), in.TimeNS)
		b.int(int64(lo))
		b.int(int64(eq))
	}
	b.str(in.Requester.Partner)
	b.str(in.Requester.Type)
	b.str(in.Requester.Role)
	if a.Practitioner {
		b.str(in.Requester.Practitioner)
	}
	b.str(in.Provider.Partner)
	b.str(in.Provider.Type)
	b.bool(in.Provider.Sensitive)
	b.str(in.Purpose)
	b.strs(in.Categories)
	b.str(in.Override.Ground)
	b.bool(in.Override.Justified)
	b.int(int64(len(in.Consents)))
	var ids []string
	if a.OpaqueIDs {
		for _, c := range in.Consents {
			ids = append(ids, c.ID)
		}
		slices.Sort(ids)
		ids = slices.Compact(ids)
	}
	for _, c := range in.Consents {
		if a.OpaqueIDs {
			i, _ := slices.BinarySearch(ids, c.ID)
			b.int(int64(i))
		} else {
			b.str(c.ID)
		}
		b.str(c.Outcome)
		b.str(c.GivenBy)
		b.bool(c.Competent)
		b.strs(c.Purposes)
		b.strs(c.Categories)
		b.strs(c.Recipients.Partners)
		b.strs(c.Recipients.Types)
		b.strs(c.Recipients.Protocols)
		for _, v := range []int64{c.ValidFromNS, c.ValidUntilNS, c.WithdrawnNS} {
			if a.ConsentTimes {
				b.int(int64(cmp.Compare(v, 0)))
				b.int(int64(cmp.Compare(in.TimeNS, v)))
			} else {
				b.int(v)
			}
		}
	}
	return string(b.buf)
}

type keyBuilder struct{ buf []byte }

func (b *keyBuilder) int(v int64) { b.buf = binary.AppendVarint(b.buf, v) }
func (b *keyBuilder) str(s string) {
	b.buf = binary.AppendUvarint(b.buf, uint64(len(s)))
	b.buf = append(b.buf, s...)
}
func (b *keyBuilder) bool(v bool) {
	if v {
		b.buf = append(b.buf, 1)
	} else {
		b.buf = append(b.buf, 0)
	}
}
func (b *keyBuilder) strs(v []string) {
	b.buf = binary.AppendUvarint(b.buf, uint64(len(v)))
	for _, s := range v {
		b.str(s)
	}
}

// Cache is a sharded, bounded map (of what-if outcomes, of live decisions,
// of the Trust-level parts of decisions). A full shard is emptied: the
// cache never grows past its bound, and recent keys refill it. Safe for
// concurrent use.
type Cache[K comparable, V any] struct {
	seed   maphash.Seed
	shards [64]cacheShard[K, V]
	limit  int // per shard
}

type cacheShard[K comparable, V any] struct {
	mu sync.RWMutex
	m  map[K]V
}

// NewCache holds about entries values (at least 1,024: 64 shards of at
// least 16).
func NewCache[K comparable, V any](entries int) *Cache[K, V] {
	m := &Cache[K, V]{seed: maphash.MakeSeed(), limit: max(entries/64, 16)}
	for i := range m.shards {
		m.shards[i].m = map[K]V{}
	}
	return m
}

func (m *Cache[K, V]) shard(key K) *cacheShard[K, V] {
	return &m.shards[maphash.Comparable(m.seed, key)%uint64(len(m.shards))]
}

// Get returns the value held for key.
func (m *Cache[K, V]) Get(key K) (V, bool) {
	s := m.shard(key)
	s.mu.RLock()
	v, ok := s.m[key]
	s.mu.RUnlock()
	return v, ok
}

// Len is how many values the cache holds.
func (m *Cache[K, V]) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// Put holds v for key.
func (m *Cache[K, V]) Put(key K, v V) {
	s := m.shard(key)
	s.mu.Lock()
	if len(s.m) >= m.limit {
		clear(s.m)
	}
	s.m[key] = v
	s.mu.Unlock()
}
