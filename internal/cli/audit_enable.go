//go:build !node

package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/deploy"
	"github.com/vigil-sec/vigil/internal/audit"
)

type auditEnableFlags struct {
	manifest   string
	policyDir  string
	logDir     string
	log        bool
	webhookURL string
	tokenFile  string
	caFile     string
	backup     string
	dryRun     bool
	rollback   bool
}

func auditEnableCmd() *cobra.Command {
	var f auditEnableFlags
	cmd := &cobra.Command{
		Use:   "enable",
		Short: "Turn on API server audit logging on this control-plane node (kubeadm layout)",
		Long: `Turn on Kubernetes API server auditing on this control-plane node, as Vigil's
control-plane rules need it. Run it as root on every control-plane node.

It writes Vigil's audit policy to POLICY-DIR/audit-policy.yaml and, with
--webhook-url, a kubeconfig that makes kube-apiserver send audit events to
Vigil (POLICY-DIR/vigil-audit-webhook.kubeconfig, mode 0600: it holds the
cluster's token, which is never printed). Then it adds the --audit-* flags
and the volumes for those files and the log directory to the kube-apiserver
static pod manifest; the kubelet restarts kube-apiserver when it sees the
change. Existing --audit-* flags that Vigil sets are replaced, and listed.

Before changing the manifest it saves it to --backup (outside the static pod
directory, where the kubelet would run it as a second API server); an
existing backup is kept while the manifest still has an audit policy, so
that it stays the manifest from before auditing. --rollback writes the backup
back. --dry-run shows the manifest diff and the files it would write, and
changes nothing. Running it again with the same flags changes nothing.

kubeadm upgrade rewrites the manifest: run this again after an upgrade, or
put the same flags and volumes in the ClusterConfiguration (apiServer.extraArgs
and apiServer.extraVolumes).`,
		Example: `  # Log to /var/log/kubernetes/audit and send to Vigil
  vigil audit enable --webhook-url https://vigil.example:7777/api/v1/audit \
    --token-file /root/vigil-cluster.token --ca-file /root/vigil-ca.crt

  # See what it would change
  vigil audit enable --dry-run

  # Undo
  vigil audit enable --rollback`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.rollback {
				return f.runRollback(cmd.OutOrStdout())
			}
			return f.runEnable(cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.manifest, "manifest", "/etc/kubernetes/manifests/kube-apiserver.yaml", "kube-apiserver static pod manifest")
	fl.StringVar(&f.policyDir, "policy-dir", filepath.Dir(audit.DefaultPolicyFile), "directory for audit-policy.yaml and the webhook kubeconfig (mounted read-only into the pod)")
	fl.StringVar(&f.logDir, "log-dir", audit.DefaultLogDir, "directory kube-apiserver writes audit.log to (rotated, gzip-compressed)")
	fl.BoolVar(&f.log, "log", true, "turn the log backend on; --log=false with --webhook-url sends to Vigil only")
	fl.StringVar(&f.webhookURL, "webhook-url", "", "send audit events to this Vigil server endpoint too (https://HOST:PORT/api/v1/audit)")
	fl.StringVar(&f.tokenFile, "token-file", "", "with --webhook-url: file holding the cluster's token (or env VIGIL_TOKEN)")
	fl.StringVar(&f.caFile, "ca-file", "", "with --webhook-url: CA bundle that signs the Vigil server's certificate (default: the system roots)")
	fl.StringVar(&f.backup, "backup", "/var/log/kube-apiserver.yaml.backup", "where to keep the manifest as it was before auditing")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print the manifest diff and the files it would write; change nothing")
	fl.BoolVar(&f.rollback, "rollback", false, "write the backup back over the manifest")
	return cmd
}

func (f *auditEnableFlags) options() audit.EnableOptions {
	opts := audit.EnableOptions{PolicyFile: filepath.Join(f.policyDir, filepath.Base(audit.DefaultPolicyFile))}
	if f.log {
		opts.LogDir = f.logDir
	}
	if f.webhookURL != "" {
		opts.WebhookConfigFile = filepath.Join(f.policyDir, filepath.Base(audit.DefaultWebhookConfigFile))
	}
	return opts
}

// checkBackupPath refuses a backup in the static pod directory: the kubelet
// runs every file there that is not hidden, whatever its name.
func (f *auditEnableFlags) checkBackupPath() error {
	if filepath.Dir(filepath.Clean(f.backup)) == filepath.Dir(filepath.Clean(f.manifest)) &&
		!strings.HasPrefix(filepath.Base(f.backup), ".") {
		return fmt.Errorf("--backup %s is in the static pod directory: the kubelet would run it as a second kube-apiserver", f.backup)
	}
	return nil
}

// webhookConfig reads the token and CA and builds the kubeconfig. Errors
// name files, never their content.
func (f *auditEnableFlags) webhookConfig() ([]byte, error) {
	var token string
	switch {
	case f.tokenFile != "":
		data, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		token = strings.TrimSpace(string(data))
	case os.Getenv("VIGIL_TOKEN") != "":
		token = strings.TrimSpace(os.Getenv("VIGIL_TOKEN"))
	default:
		return nil, errors.New("--webhook-url needs the cluster's token: --token-file FILE or VIGIL_TOKEN")
	}
	var ca []byte
	if f.caFile != "" {
		var err error
		if ca, err = os.ReadFile(f.caFile); err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
	}
	return audit.WebhookKubeconfig(f.webhookURL, ca, token)
}

// file is one file enable writes besides the manifest.
type file struct {
	path   string
	data   []byte
	mode   fs.FileMode
	secret bool // holds a credential: never show the content
}

func (f *auditEnableFlags) runEnable(out io.Writer) error {
	if !f.log && f.webhookURL == "" {
		return errors.New("nothing to enable: --log=false needs --webhook-url")
	}
	if (f.tokenFile != "" || f.caFile != "") && f.webhookURL == "" {
		return errors.New("--token-file and --ca-file go with --webhook-url")
	}
	if err := f.checkBackupPath(); err != nil {
		return err
	}
	opts := f.options()
	files := []file{{path: opts.PolicyFile, data: deploy.AuditPolicy, mode: 0o644}}
	if opts.WebhookConfigFile != "" {
		kc, err := f.webhookConfig()
		if err != nil {
			return err
		}
		files = append(files, file{path: opts.WebhookConfigFile, data: kc, mode: 0o600, secret: true})
	}

	current, err := os.ReadFile(f.manifest)
	if err != nil {
		return fmt.Errorf("read manifest: %w", err)
	}
	updated, changes, err := audit.EnableChanges(current, opts)
	if err != nil {
		return fmt.Errorf("%s: %w", f.manifest, err)
	}

	// Which files differ from what is on disk.
	var pending []file
	for _, fl := range files {
		old, err := os.ReadFile(fl.path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("read %s: %w", fl.path, err)
		}
		if err != nil || !bytes.Equal(old, fl.data) {
			pending = append(pending, fl)
		} else if st, err := os.Stat(fl.path); err == nil && st.Mode().Perm() != fl.mode {
			pending = append(pending, fl)
		}
	}
	needBackup, err := f.needBackup(current)
	if err != nil {
		return err
	}

	if len(changes) == 0 && len(pending) == 0 {
		fmt.Fprintf(out, "Nothing changed: auditing is already enabled as asked in %s.\n", f.manifest)
		return nil
	}

	verb := "Wrote"
	if f.dryRun {
		verb = "Would write"
	}
	for _, fl := range pending {
		what := "the audit policy"
		if fl.secret {
			what = "the webhook kubeconfig (holds the token; not shown)"
		}
		fmt.Fprintf(out, "%s %s: %s (%d bytes, mode %04o)\n", verb, what, fl.path, len(fl.data), fl.mode)
	}
	if len(changes) > 0 {
		if needBackup {
			fmt.Fprintf(out, "%s the backup of %s: %s\n", verb, f.manifest, f.backup)
		}
		fmt.Fprintf(out, "%s %s:\n", verb, f.manifest)
		for _, c := range changes {
			mark := "  "
			if c.Replaced() {
				mark = "! "
			}
			fmt.Fprintf(out, "%s%s\n", mark, c)
		}
	}
	if f.dryRun {
		if d := audit.Diff(f.manifest, f.manifest+" (audit enabled)", current, updated); d != "" {
			fmt.Fprint(out, "\n", d)
		}
		return nil
	}

	// The files first: the kubelet restarts kube-apiserver as soon as the
	// manifest changes, and its hostPath volumes of type File must exist.
	for _, fl := range pending {
		if err := os.MkdirAll(filepath.Dir(fl.path), 0o755); err != nil {
			return err
		}
		if err := writeAtomic(fl.path, fl.data, fl.mode); err != nil {
			return err
		}
	}
	if len(changes) == 0 {
		return nil
	}
	if opts.LogDir != "" {
		// Audit logs name every secret read: only root reads them.
		if err := os.MkdirAll(opts.LogDir, 0o700); err != nil {
			return err
		}
	}
	if needBackup {
		if err := os.MkdirAll(filepath.Dir(f.backup), 0o755); err != nil {
			return err
		}
		if err := writeAtomic(f.backup, current, 0o600); err != nil {
			return fmt.Errorf("back up the manifest: %w", err)
		}
	}
	st, err := os.Stat(f.manifest)
	if err != nil {
		return err
	}
	if err := writeAtomic(f.manifest, updated, st.Mode().Perm()); err != nil {
		return err
	}
	fmt.Fprintf(out, "The kubelet restarts kube-apiserver in a few seconds. Undo with: vigil audit enable --rollback --manifest %s --backup %s\n", f.manifest, f.backup)
	return nil
}

// needBackup: the backup is the last manifest seen without an audit
// policy. A manifest that has one (an earlier run) does not replace it.
func (f *auditEnableFlags) needBackup(current []byte) (bool, error) {
	if _, err := os.Stat(f.backup); errors.Is(err, fs.ErrNotExist) {
		return true, nil
	} else if err != nil {
		return false, err
	}
	flags, err := audit.Flags(current)
	if err != nil {
		return false, err
	}
	_, audited := flags["audit-policy-file"]
	return !audited, nil
}

func (f *auditEnableFlags) runRollback(out io.Writer) error {
	if err := f.checkBackupPath(); err != nil {
		return err
	}
	backup, err := os.ReadFile(f.backup)
	if err != nil {
		return fmt.Errorf("read backup: %w", err)
	}
	restored, err := audit.Rollback(backup)
	if err != nil {
		return fmt.Errorf("%s: %w", f.backup, err)
	}
	current, err := os.ReadFile(f.manifest)
	if err != nil {
		return fmt.Errorf("read manifest: %w", err)
	}
	// The webhook kubeconfig holds a token; once no manifest points at it,
	// it goes.
	kubeconfig := f.options().WebhookConfigFile
	if kubeconfig == "" {
		kubeconfig = filepath.Join(f.policyDir, filepath.Base(audit.DefaultWebhookConfigFile))
	}
	var removeKubeconfig bool
	if flags, err := audit.Flags(restored); err == nil && flags["audit-webhook-config-file"] != kubeconfig {
		_, err := os.Stat(kubeconfig)
		removeKubeconfig = err == nil
	}
	if bytes.Equal(current, restored) && !removeKubeconfig {
		fmt.Fprintf(out, "Nothing changed: %s already matches the backup %s.\n", f.manifest, f.backup)
		return nil
	}
	verb := "Restored"
	if f.dryRun {
		verb = "Would restore"
	}
	if !bytes.Equal(current, restored) {
		fmt.Fprintf(out, "%s %s from %s\n", verb, f.manifest, f.backup)
	}
	if removeKubeconfig {
		v := "Removed"
		if f.dryRun {
			v = "Would remove"
		}
		fmt.Fprintf(out, "%s the webhook kubeconfig %s\n", v, kubeconfig)
	}
	if f.dryRun {
		if d := audit.Diff(f.manifest, f.backup, current, restored); d != "" {
			fmt.Fprint(out, "\n", d)
		}
		return nil
	}
	if !bytes.Equal(current, restored) {
		st, err := os.Stat(f.manifest)
		if err != nil {
			return err
		}
		if err := writeAtomic(f.manifest, restored, st.Mode().Perm()); err != nil {
			return err
		}
	}
	if removeKubeconfig {
		if err := os.Remove(kubeconfig); err != nil {
			return err
		}
	}
	return nil
}

// writeAtomic replaces path with data: a hidden temporary file in the same
// directory (the kubelet ignores hidden files in the static pod directory),
// synced, given mode and the old file's owner, then renamed over path.
func writeAtomic(path string, data []byte, mode fs.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".vigil-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, there is nothing to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if st, err := os.Stat(path); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			_ = tmp.Chown(int(sys.Uid), int(sys.Gid)) // best effort: only root may give files away
		}
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
