// Package revision owns the gateway's active view of the Trust: one
// registry, the protocols (in force or not, with reasons), and the compiled
// policy prepared with the in-force protocols as data. A Revision is built
// whole and checked before it is published; a Holder swaps revisions
// atomically, so a request sees exactly one revision from start to end and
// a failed build leaves the previous revision serving.
package revision
