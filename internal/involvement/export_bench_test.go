//go:build bench

package involvement

import bolt "go.etcd.io/bbolt"

// RawView runs fn in a read transaction of s's file: the benchmark's
// peer, a plain bbolt scan of the same data.
func RawView(s *Store, fn func(*bolt.Tx) error) error { return s.db.View(fn) }
