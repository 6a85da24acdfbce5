//go:build pprof

package main

// A binary built with -tags pprof (only the benchmarks build one) serves
// Go's profiles on the loopback address in TRUSTGATE_PPROF_ADDR, so that
// a benchmark can say where the gateway's CPU and allocations go. A
// release binary has no such listener: this file is not in it.

import (
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
)

func init() {
	addr := os.Getenv("TRUSTGATE_PPROF_ADDR")
	if addr == "" || !strings.HasPrefix(addr, "127.0.0.1:") {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return
	}
	go func() { _ = http.Serve(l, mux) }()
}
