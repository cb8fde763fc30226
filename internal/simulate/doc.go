// Package simulate runs harmless versions of real attacks against a
// victim workload and checks that the alerts Vigil should raise for them
// reach the server.
//
// Each scenario (one file per scenario: webshell.go, recon.go, ...) names
// the rules it must raise, prepares a victim, performs its steps and
// records when each step ran. Run then asks an AlertSource (the server's
// API, implemented by the CLI) until every expected alert shows up for
// the victim's container, and reports pass or fail with the detection
// latency: the time from a step to its alert being visible.
//
// The local backend (Local) runs each victim in its own runc container
// with a busybox-static root filesystem on overlayfs and a private network
// namespace; the attacker side (the simulating process) reaches the victim
// only inside that namespace, so nothing a scenario sends leaves the
// machine, and no packet ever goes to a real cloud metadata service. The
// sensor of `vigil up` watches the container like any pod's.
// `vigil simulate --local` is its user; a cluster backend (pods in the
// vigil-simulation namespace) implements the same Backend interface.
package simulate
