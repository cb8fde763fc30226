// Command workload is the sensor benchmark's load: sequential short execs
// and sequential loopback TCP connects, timed. It prints one JSON line:
// {"pid":..,"execs":..,"connects":..,"exec_seconds":..,"connect_seconds":..,"seconds":..}.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"time"
)

func main() {
	execs := flag.Int("execs", 20000, "sequential execs of -bin")
	connects := flag.Int("connects", 20000, "sequential loopback TCP connects")
	bin := flag.String("bin", "/bin/true", "program to exec")
	flag.Parse()
	if err := run(*execs, *connects, *bin); err != nil {
		fmt.Fprintln(os.Stderr, "workload:", err)
		os.Exit(1)
	}
}

func run(execs, connects int, bin string) error {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	start := time.Now()
	for i := 0; i < execs; i++ {
		if err := exec.Command(bin).Run(); err != nil {
			return fmt.Errorf("exec %d: %w", i, err)
		}
	}
	execDone := time.Now()
	for i := 0; i < connects; i++ {
		c, err := net.Dial("tcp4", l.Addr().String())
		if err != nil {
			return fmt.Errorf("connect %d: %w", i, err)
		}
		c.(*net.TCPConn).SetLinger(0) // reset on close: no TIME_WAIT, no port exhaustion across runs
		c.Close()
	}
	end := time.Now()
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"pid": os.Getpid(), "execs": execs, "connects": connects,
		"exec_seconds":    execDone.Sub(start).Seconds(),
		"connect_seconds": end.Sub(execDone).Seconds(),
		"seconds":         end.Sub(start).Seconds(),
	})
}
