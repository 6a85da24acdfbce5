// Package registry owns the Children's Trust's partner registry: who the
// partners are, what kind of agency each is, whether it is a sensitive
// service, where its provider endpoint lives, and the public keys it signs
// with. It also owns the Trust's closed vocabularies (purposes, data
// categories, practitioner roles) that every other package validates against.
//
// A Registry is immutable once loaded; a new revision is a new Registry.
package registry
