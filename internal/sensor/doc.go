// Package sensor is Vigil's node sensor: it loads the eBPF programs of
// package bpf, reads their records, keeps a process tree (package
// proctree) and attributes each process to its container (package
// container), and hands out event.Events.
//
// Run is the whole loop; cmd/vigil's `sensor` subcommand calls it and
// prints events as JSON lines, and the detection engine consumes the same
// stream. When eBPF cannot be loaded, Run falls back to the netlink process
// connector (exec, fork and exit only) and says so in a sensor.health event.
package sensor
