// Package proctree is the sensor's bounded process cache: pid -> the
// process's current exec (exe, argv, exec id) and its parent, kept right by
// fork, exec and exit records and seeded from /proc at start.
//
// The sensor's event loop feeds it and asks it for the parent and ancestry
// of every event's process. Memory is bounded: at most Config.Max entries,
// argv kept to Config.MaxArgBytes, exited processes kept only until space
// is needed (so that late events and orphans still find their ancestors).
package proctree
