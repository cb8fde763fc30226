package sensor

import (
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// clock converts the kernel's CLOCK_BOOTTIME nanoseconds into wall time.
// The offset is re-read by sync, so that wall-clock steps (NTP) reach
// event times.
type clock struct {
	bootWallNs atomic.Int64 // wall time at boot, in ns
}

func newClock() *clock {
	c := &clock{}
	c.sync()
	return c
}

func (c *clock) sync() {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	c.bootWallNs.Store(time.Now().UnixNano() - ts.Nano())
}

// wall returns the wall time of a CLOCK_BOOTTIME instant; zero for zero.
func (c *clock) wall(boottimeNs uint64) time.Time {
	if boottimeNs == 0 {
		return time.Time{}
	}
	return time.Unix(0, c.bootWallNs.Load()+int64(boottimeNs)).UTC()
}
