package simulate

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// saTokenPath is where the kubelet mounts a pod's service-account token.
const saTokenPath = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// fakeSAToken is planted instead of a real token: a JWT-shaped string that
// no API server accepts.
const fakeSAToken = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ2aWdpbC1zaW0ifQ.vigil-sim-not-a-token"

// fakeAPIAddr is where the attacker's stand-in for the API server listens
// in the victim's network (--local has no cluster; its address is the
// victim's KUBERNETES_SERVICE_HOST).
const fakeAPIAddr = "127.0.0.1:6443"

// scanPorts is the port scan's bounded list: the API server, etcd, the
// kubelet and a few common services, all on loopback.
const scanPorts = "22,80,443,2379,6443,8080,10250"

// nmapScript stands in for nmap (a renamed benign tool, as Defender's
// victim image ships nmap): a TCP connect scan of one host over a short
// list of ports with busybox nc.
const nmapScript = `#!/bin/sh
# vigil-sim: a tiny TCP connect scanner in place of nmap; one host, a bounded port list.
ports=80; host=127.0.0.1
while [ $# -gt 0 ]; do
  case "$1" in
    -p) ports=$(echo "$2" | sed 's/,/ /g'); shift 2 ;;
    -*) shift ;;
    *) host=$1; shift ;;
  esac
done
for p in $ports; do
  if nc -w 1 "$host" "$p" </dev/null >/dev/null 2>&1; then echo "$p/tcp open"; fi
done
`

// accessReview is the shell command that asks the API server what the
// pod's token may do (a SelfSubjectAccessReview, as `kubectl auth can-i`
// does), with a kubectl user agent, over scheme.
func accessReview(scheme string) string {
	ssar := `{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","spec":{"resourceAttributes":{"namespace":"default","verb":"get","resource":"pods"}}}`
	insecure := ""
	if scheme == "https" {
		insecure = "--no-check-certificate "
	}
	return `/bin/wget -q -O - ` + insecure + `-U kubectl/v1.31.0 --header "Authorization: Bearer $(/bin/cat ` + saTokenPath + `)" ` +
		`--header "Content-Type: application/json" --post-data '` + ssar + `' ` +
		scheme + `://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/apis/authorization.k8s.io/v1/selfsubjectaccessreviews`
}

// reconCluster is recon in a victim pod: the token is the pod's own and
// the access review reaches the real API server. The victim's
// KUBERNETES_SERVICE_HOST/PORT name a plain-HTTP listener on the pod's
// loopback (the attacker's, through the relay) that forwards each request
// as it came, the pod's token included and never the user's credentials,
// to the cluster's API server over TLS: busybox wget's own TLS offers no
// signature_algorithms extension, so TLS 1.2 servers that refuse SHA-1
// signatures (Go 1.25 and later, hence kube-apiserver) end its handshake
// with handshake_failure, and the victim image has no other TLS client.
// The scan covers the same loopback address, on the short port list.
func reconCluster(ctx context.Context, s *Session, v *podVictim) error {
	proxy, err := v.c.apiProxy()
	if err != nil {
		return err
	}
	stop, err := serve(s.Victim, fakeAPIAddr, proxy)
	if err != nil {
		return err
	}
	defer stop()
	s.Step("runtime.service-account-token-read")
	if _, err := s.Exec(ctx, "/bin/cat", saTokenPath); err != nil {
		return err
	}
	s.Step("runtime.kube-api-from-container")
	out, err := s.Exec(ctx, "/bin/sh", "-c", accessReview("http"))
	if err != nil {
		return err
	}
	if !strings.Contains(out, "SelfSubjectAccessReview") {
		return fmt.Errorf("the API server did not answer the access review: %q", out)
	}
	s.Logf("  the API server answered: %s", strings.TrimSpace(out))
	s.Step("runtime.network-scanning-tool")
	out, err = s.Exec(ctx, "/usr/bin/nmap", "-Pn", "--open", "-p", scanPorts, "127.0.0.1")
	if err != nil {
		return err
	}
	return errIf(strings.Contains(out, "6443/tcp open"), "the port scan did not find the API server's port on the pod's loopback: %q", out)
}

func recon() *Scenario {
	return &Scenario{
		ID:      "recon",
		Summary: "reads the service-account token, asks the API what it may do with a kubectl user agent, scans loopback ports",
		Rules:   []string{"runtime.service-account-token-read", "runtime.kube-api-from-container", "runtime.network-scanning-tool"},
		Victim: VictimSpec{
			Name: "recon",
			Env:  []string{"KUBERNETES_SERVICE_HOST=127.0.0.1", "KUBERNETES_SERVICE_PORT=6443"},
			Files: map[string]File{
				saTokenPath: {Data: []byte(fakeSAToken), Mode: 0o644},
				"/var/run/secrets/kubernetes.io/serviceaccount/namespace": {Data: []byte(Namespace), Mode: 0o644},
				"/usr/bin/nmap": {Data: []byte(nmapScript), Mode: 0o755},
			},
		},
		// In a cluster: the pod's own token, the real API server (behind
		// the attacker's forwarder at KUBERNETES_SERVICE_HOST:PORT).
		PodServiceAccount: true,
		Run: func(ctx context.Context, s *Session) error {
			if v, ok := s.Victim.(*podVictim); ok {
				return reconCluster(ctx, s, v)
			}
			asked := make(chan string, 4)
			stop, err := serve(s.Victim, fakeAPIAddr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
				select {
				case asked <- r.Method + " " + r.URL.Path + " " + r.UserAgent() + " " + string(body):
				default:
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusCreated)
				fmt.Fprint(w, `{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","status":{"allowed":false,"reason":"vigil-sim: not a real API server"}}`)
			}))
			if err != nil {
				return err
			}
			defer stop()

			s.Step("runtime.service-account-token-read")
			if _, err := s.Exec(ctx, "/bin/cat", saTokenPath); err != nil {
				return err
			}
			s.Step("runtime.kube-api-from-container")
			if _, err := s.Exec(ctx, "/bin/sh", "-c", accessReview("http")); err != nil {
				return err
			}
			select {
			case req := <-asked:
				s.Logf("  fake API server got: %s", req)
				if !strings.Contains(req, "kubectl") {
					return fmt.Errorf("the access review reached the fake API server without a kubectl user agent: %s", req)
				}
			default:
				return fmt.Errorf("the access review did not reach the fake API server at %s", fakeAPIAddr)
			}
			s.Step("runtime.network-scanning-tool")
			out, err := s.Exec(ctx, "/usr/bin/nmap", "-Pn", "--open", "-p", scanPorts, "127.0.0.1")
			if err != nil {
				return err
			}
			return errIf(strings.Contains(out, "6443/tcp open"), "the port scan did not find the fake API server's port: %q", out)
		},
	}
}
