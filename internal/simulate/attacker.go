package simulate

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// serve runs an attacker's HTTP server (a fake metadata service, the
// miner's download site) at addr inside the victim's network. The
// returned stop closes it.
func serve(v Victim, addr string, h http.Handler) (stop func(), err error) {
	l, err := v.Listen(addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	return func() {
		_ = srv.Close()
		<-done
	}, nil
}

// victimHTTP is an HTTP client whose connections are made inside the
// victim's network: the attacker reaching the victim's service.
func victimHTTP(v Victim) *http.Client {
	return &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			DialContext:       func(ctx context.Context, _, addr string) (net.Conn, error) { return v.Dial(ctx, addr) },
			DisableKeepAlives: true,
		},
	}
}

// waitListening waits until something accepts connections at addr in the
// victim's network (the victim's server has started).
func waitListening(ctx context.Context, v Victim, addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := v.Dial(ctx, addr)
		if err == nil {
			c.Close()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s in the victim: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// queryEscape escapes every byte but letters and digits, so that the
// victim's URL decoder has no '+' or '/' to interpret.
func queryEscape(s string) string {
	var b strings.Builder
	for i := range len(s) {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// errIf returns an error naming what when cond is false.
func errIf(cond bool, format string, args ...any) error {
	if cond {
		return nil
	}
	return fmt.Errorf(format, args...)
}
