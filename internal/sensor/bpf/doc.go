// Package bpf holds the sensor's eBPF programs (sensor.bpf.c), their
// bpf2go-generated Go bindings, the loader that attaches them, and the
// decoder that turns ring-buffer records into Records.
//
// It is the only package that imports github.com/cilium/ebpf. The sensor
// package (one level up) reads Records from an Objects and builds events.
//
// The generated sensor_bpfel.go and sensor_bpfel.o are committed, so building
// Vigil needs no clang; `make generate` rebuilds them with Debian's clang-14
// and CI fails when the committed files are stale.
package bpf
