// Package runctest starts real containers for tests: runc from Debian with
// a busybox-static root filesystem, optionally on overlayfs, in a cgroup
// path of the caller's choosing (e.g. a kubelet-style one). There is no
// Docker engine on the build machines; this is the real thing underneath.
//
// Tests that use it need root; Start fails the test, never skips it, when
// runc or busybox is missing or the caller is not root.
package runctest
