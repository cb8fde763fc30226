package simulate

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
)

// metadataIP is the cloud instance metadata address. The scenario gives
// it to the victim's own loopback interface and serves fake answers there:
// no request ever goes to a real metadata service.
const metadataIP = "169.254.169.254"

// fakeMetadata answers the identity requests of Azure, AWS (IMDSv2) and
// GCP with obviously fake credentials, and counts what it was asked.
type fakeMetadata struct {
	mu   sync.Mutex
	hits []string
}

func (f *fakeMetadata) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.hits = append(f.hits, r.Method+" "+r.URL.Path)
	f.mu.Unlock()
	p := r.URL.Path
	switch {
	case p == "/metadata/identity/oauth2/token":
		fmt.Fprint(w, `{"access_token":"vigil-sim-fake-azure-token","token_type":"Bearer"}`)
	case strings.HasPrefix(p, "/metadata/instance"):
		fmt.Fprint(w, "vigil-sim-region")
	case p == "/latest/api/token" && r.Method == http.MethodPut:
		fmt.Fprint(w, "vigil-sim-fake-imdsv2-session")
	case p == "/latest/meta-data/iam/security-credentials/":
		fmt.Fprint(w, "vigil-sim-role")
	case strings.HasPrefix(p, "/latest/meta-data/iam/security-credentials/"):
		fmt.Fprint(w, `{"Code":"Success","AccessKeyId":"vigil-sim-fake","SecretAccessKey":"vigil-sim-fake","Token":"vigil-sim-fake"}`)
	case strings.HasPrefix(p, "/computeMetadata/v1/instance/service-accounts/"):
		fmt.Fprint(w, `{"access_token":"vigil-sim-fake-gcp-token","token_type":"Bearer"}`)
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeMetadata) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.hits...)
}

func lateralMovement() *Scenario {
	return &Scenario{
		ID:      "lateral-movement",
		Summary: "asks the cloud metadata service (a fake one inside the victim's network) for instance data and identity tokens",
		Rules:   []string{"runtime.cloud-metadata-access", "runtime.cloud-metadata-token"},
		Victim:  VictimSpec{Name: "lateral-movement"},
		// Only this address, on the victim's own loopback: never a real
		// metadata service.
		LocalAddresses: []string{metadataIP},
		Run: func(ctx context.Context, s *Session) error {
			md := &fakeMetadata{}
			if !s.RealMetadata {
				if err := s.Victim.AddLocalAddress(ctx, metadataIP); err != nil {
					return err
				}
				stop, err := serve(s.Victim, metadataIP+":80", md)
				if err != nil {
					return err
				}
				defer stop()
			}
			s.Step("runtime.cloud-metadata-access")
			if _, err := s.Exec(ctx, "/bin/wget", "-q", "-O", "-", "--header", "Metadata: true",
				"http://"+metadataIP+"/metadata/instance/compute/location?api-version=2021-02-01&format=text"); err != nil {
				return err
			}
			s.Step("runtime.cloud-metadata-token")
			steps := [][]string{
				// Azure: the managed identity's token.
				{"/bin/wget", "-q", "-O", "-", "--header", "Metadata: true",
					"http://" + metadataIP + "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/"},
				// AWS IMDSv2: a session token (PUT, which busybox wget cannot send), then the role's credentials.
				{"/bin/sh", "-c", `printf 'PUT /latest/api/token HTTP/1.0\r\nHost: ` + metadataIP + `\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n' | /bin/nc -w 2 ` + metadataIP + ` 80`},
				{"/bin/sh", "-c", `role=$(/bin/wget -q -O - http://` + metadataIP + `/latest/meta-data/iam/security-credentials/) && /bin/wget -q -O - http://` + metadataIP + `/latest/meta-data/iam/security-credentials/$role`},
				// GCP: the default service account's token.
				{"/bin/wget", "-q", "-O", "-", "--header", "Metadata-Flavor: Google",
					"http://" + metadataIP + "/computeMetadata/v1/instance/service-accounts/default/token"},
			}
			for _, args := range steps {
				if _, err := s.Exec(ctx, args...); err != nil {
					return err
				}
			}
			if s.RealMetadata {
				s.Logf("  asked the real metadata service (--real-metadata)")
				return nil // the answers are the cloud's; the alerts are the check
			}
			hits := md.requests()
			s.Logf("  fake metadata service answered: %q", hits)
			return errIf(len(hits) >= 5, "the fake metadata service answered %d requests, want at least 5: %q", len(hits), hits)
		},
	}
}
