// Package procconn reads fork, exec and exit notifications from the Linux
// process events connector (a NETLINK_CONNECTOR socket subscribed to the
// CN_IDX_PROC group).
//
// It is the sensor's fallback when its eBPF programs cannot be loaded: the
// sensor package opens a Conn, reads Events from it and, because the
// connector reports pids only, fills in each process from /proc (package
// procfs). Parse is the pure decoder underneath Read and is tested on plain
// bytes without a kernel.
//
// The kernel reports process events only to listeners in the initial user
// and pid namespaces, through the connector socket of the initial network
// namespace; Open checks for the kernel's acknowledgement of its
// subscription and fails, rather than returning a Conn that would never see
// an event, when any of those does not hold.
package procconn
