package cli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestMain lets the tests run the CLI in a child process, as another user.
func TestMain(m *testing.M) {
	if args := os.Getenv("VIGIL_CLI_TEST_ARGS"); args != "" {
		root := Root()
		root.SetArgs(strings.Fields(args))
		if err := root.ExecuteContext(context.Background()); err != nil {
			os.Stderr.WriteString("vigil: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// vigil runs the CLI with args as uid, returning its stderr and exit code.
func vigil(t *testing.T, uid uint32, args string) (string, int) {
	t.Helper()
	cmd := exec.Command(worldExecutable(t))
	cmd.Env = append(os.Environ(), "VIGIL_CLI_TEST_ARGS="+args)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return stderr.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return stderr.String(), 0
}

func TestSensorNotRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test switches to an unprivileged user: run it as root")
	}
	stderr, code := vigil(t, 65534, "sensor --output jsonl")
	if code == 0 || !strings.Contains(stderr, "must run as root") {
		t.Fatalf("exit %d, stderr %q: want a non-zero exit saying root is needed", code, stderr)
	}
}

func TestSensorBadOutput(t *testing.T) {
	stderr, code := vigil(t, 0, "sensor --output xml")
	if code == 0 || !strings.Contains(stderr, `--output "xml"`) {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

// worldExecutable copies the test binary where any user may run it (the
// go tool builds it in a private directory).
func worldExecutable(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "vigil-cli-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "vigil.test")
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}
