package simulate

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// Local is the backend of `vigil simulate --local`: every victim is a runc
// container on this machine (busybox-static root on overlayfs, its own
// network namespace with only a loopback interface), named vigil-sim-*,
// attributed to a pod of namespace vigil-simulation. It needs root, runc
// and busybox.
type Local struct {
	runc, busybox string
	lock          *os.File // held while the run lasts; see Check
}

// localLock serializes local simulations on this machine: whoever holds it
// knows every vigil-sim-* container is its own or left by a run that was
// killed.
const localLock = "/run/vigil-simulate.lock"

// Name implements Backend.
func (l *Local) Name() string { return "local" }

// Check implements Backend.
func (l *Local) Check() error {
	runc, busybox, err := requirements()
	if err != nil {
		return fmt.Errorf("local simulation: %w", err)
	}
	l.runc, l.busybox = runc, busybox
	f, err := os.OpenFile(localLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("local simulation: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return fmt.Errorf("local simulation: another `vigil simulate --local` is running on this machine (%s is locked)", localLock)
	}
	l.lock = f
	removeStale(runc)
	return nil
}

// Close releases the machine's simulation lock.
func (l *Local) Close() error {
	if l.lock == nil {
		return nil
	}
	err := l.lock.Close() // closing drops the flock
	l.lock = nil
	return err
}

// Skip implements Backend.
func (l *Local) Skip(sc *Scenario) string {
	if sc.NeedsCluster {
		return "needs a cluster"
	}
	return ""
}

// Start implements Backend.
func (l *Local) Start(ctx context.Context, spec VictimSpec) (Victim, error) {
	if l.runc == "" {
		if err := l.Check(); err != nil {
			return nil, err
		}
	}
	c, err := startContainer(ctx, l.runc, l.busybox, spec)
	if err != nil {
		return nil, err
	}
	// The attacker's traffic goes only through this namespace: make
	// sure it has nothing but lo before anything is sent in it.
	if err := onlyLoopback(c.pid); err != nil {
		c.remove()
		return nil, err
	}
	if err := c.hostNetns(ctx, "ip", "link", "set", "lo", "up"); err != nil {
		c.remove()
		return nil, err
	}
	return &localVictim{c: c}, nil
}

type localVictim struct{ c *container }

func (v *localVictim) ContainerID() string { return v.c.id }

func (v *localVictim) Exec(ctx context.Context, args ...string) (string, error) {
	return v.c.exec(ctx, args...)
}

func (v *localVictim) Dial(ctx context.Context, addr string) (net.Conn, error) {
	return dialIn(ctx, v.c.pid, addr)
}

func (v *localVictim) Listen(addr string) (net.Listener, error) {
	return listenIn(v.c.pid, addr)
}

func (v *localVictim) AddLocalAddress(ctx context.Context, ip string) error {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is4() {
		return fmt.Errorf("address %q: want IPv4", ip)
	}
	if err := onlyLoopback(v.c.pid); err != nil {
		return err
	}
	return v.c.hostNetns(ctx, "ip", "addr", "add", a.String()+"/32", "dev", "lo")
}

func (v *localVictim) Remove() error { return v.c.remove() }
