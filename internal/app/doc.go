// Package app wires the gateway together (config → audit → keys →
// revision → identity → server), runs it, and stops it in reverse order
// with a deadline. It holds no logic of its own beyond wiring and the
// lifecycle.
package app
