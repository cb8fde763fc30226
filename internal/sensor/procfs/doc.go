// Package procfs reads what /proc knows about a process: its parent, exe,
// argv, cwd, credentials and start time.
//
// The sensor uses it to seed its process tree at start (so processes that
// predate the sensor have parents) and, in netlink fallback mode, to fill
// in exec events the kernel reported with a pid only.
package procfs
