package detect

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// validate refuses exceptions that would silence everything everywhere or
// that cannot match.
func (x *Exception) validate() error {
	if x.ID == "" {
		return errors.New("exception: id is required")
	}
	if strings.TrimSpace(x.Reason) == "" {
		return fmt.Errorf("exception %s: a reason is required", x.ID)
	}
	if x.Cluster == "" && x.Namespace == "" && x.Workload == "" && x.Image == "" && len(x.Labels) == 0 &&
		x.ProcessPath == "" && x.Cmdline == "" {
		return fmt.Errorf("exception %s: scope it (cluster, namespace, workload, image, labels, process_path or cmdline)", x.ID)
	}
	for _, g := range []string{x.Cluster, x.Namespace, x.Workload, x.Image, x.ProcessPath, x.Cmdline} {
		if _, err := path.Match(globPattern(g), ""); err != nil {
			return fmt.Errorf("exception %s: bad pattern %q: %w", x.ID, g, err)
		}
	}
	for _, r := range x.Rules {
		if _, err := path.Match(r, ""); err != nil {
			return fmt.Errorf("exception %s: bad rule pattern %q: %w", x.ID, r, err)
		}
	}
	return nil
}

// Matches reports whether x silences alert a at time now.
func (x *Exception) Matches(a *event.Alert, now time.Time) bool {
	if !x.Expires.IsZero() && now.After(x.Expires) {
		return false
	}
	if len(x.Rules) > 0 {
		hit := false
		for _, r := range x.Rules {
			if globMatch(r, a.Rule) {
				hit = true
				break
			}
		}
		if !hit {
			return false
		}
	}
	var exe, cmd string
	if a.Process != nil {
		exe, cmd = a.Process.Exe, strings.Join(a.Process.Args, " ")
	}
	for _, c := range []struct{ pattern, value string }{
		{x.Cluster, a.Cluster}, {x.Namespace, a.Namespace}, {x.Workload, a.Workload}, {x.Image, a.Image},
		{x.ProcessPath, exe}, {x.Cmdline, cmd},
	} {
		if c.pattern != "" && !globMatch(c.pattern, c.value) {
			return false
		}
	}
	for k, want := range x.Labels {
		if got, ok := a.Labels[k]; !ok || !globMatch(want, got) {
			return false
		}
	}
	return true
}

// globMatch matches shell-style patterns where * also crosses '/', so
// "/usr/lib/jvm/*" covers every file below it.
func globMatch(pattern, s string) bool {
	ok, _ := path.Match(globPattern(pattern), strings.ReplaceAll(s, "/", "\x00"))
	return ok
}

func globPattern(p string) string { return strings.ReplaceAll(p, "/", "\x00") }
