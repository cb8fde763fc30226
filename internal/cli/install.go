//go:build !node

package cli

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"

	"github.com/vigil-sec/vigil/internal/install"
)

// installFlags configure `vigil install`.
type installFlags struct {
	target         install.Target
	server         string
	cluster        string
	credentialFile string
	token          string // admin token: join the cluster when no credential is given
	proxyFile      string
	values         values.Options
	dryRun         bool
	upgrade        bool
	timeout        time.Duration
	logLevel       string
}

// registerTarget registers the flags install and uninstall share: which
// cluster and namespace.
func registerTarget(cmd *cobra.Command, target *install.Target) {
	fl := cmd.Flags()
	fl.StringVarP(&target.Namespace, "namespace", "n", install.DefaultNamespace, "Vigil's namespace")
	fl.StringVar(&target.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
	fl.StringVar(&target.Context, "context", "", "kubeconfig context (default: the current one)")
}

func installCmd() *cobra.Command {
	var f installFlags
	cmd := &cobra.Command{
		Use:   "install [--server URL --cluster NAME] [--credential-file FILE] [--set key=value] [-f values.yaml] [--dry-run] [--upgrade]",
		Short: "Install Vigil into the cluster of the current kubeconfig (the embedded Helm chart)",
		Long: `Install the Helm chart embedded in this binary as the release "vigil" in
--namespace (created if missing): the sensor DaemonSet, the agent (admission
webhook, posture scanner) and, with --set server.enabled=true, a server.

Values come from -f files, then --set, --set-string and --set-file, then
the flags --server (serverURL), --cluster (clusterName), --credential-file
(joinCredential.value) and --proxy-file (proxy). The join credential and the
proxy URL are protected settings: they go only into Secrets (vigil-join,
vigil-proxy), are never printed, and --dry-run shows those Secrets with
their data redacted. Prefer the file flags: --set values show in ps and in
your shell history.

--dry-run renders and prints the manifests without a cluster. Otherwise
install refuses to run over an existing release (use --upgrade, which keeps
the values given before unless overridden) and refuses a cluster whose
kube-system namespace carries the exclusion label (vigil.dev/exclude, or
the chart's clusterExcludeLabel) with any value but "false". It does not
wait for pods: run vigil verify.`,
		Example: `  vigil install --server https://vigil.example.com --cluster prod-1 --credential-file prod-1.credential
  vigil install --dry-run --server https://vigil.example.com --cluster prod-1 > vigil.yaml
  vigil install --upgrade --set failurePolicy=Fail`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runInstall(cmd, f)
		},
	}
	fl := cmd.Flags()
	registerTarget(cmd, &f.target)
	fl.StringVar(&f.server, "server", "", "the Vigil server the cluster reports to (https://host:port); sets serverURL")
	fl.StringVar(&f.cluster, "cluster", "", "cluster name stamped on alerts; sets clusterName")
	fl.StringVar(&f.credentialFile, "credential-file", "", "file holding the cluster's join credential (vigil cluster add NAME); protected")
	fl.StringVar(&f.token, "token", "", "admin token of --server (env VIGIL_TOKEN): without a join credential, install creates the cluster there and keeps its credential in the vigil-join Secret")
	fl.StringVar(&f.proxyFile, "proxy-file", "", "file holding the proxy URL, http://user:password@host:port; protected")
	fl.StringArrayVar(&f.values.Values, "set", nil, "set a chart value, key=value (repeatable; helm's syntax)")
	fl.StringArrayVar(&f.values.StringValues, "set-string", nil, "set a chart value as a string, key=value (repeatable)")
	fl.StringArrayVar(&f.values.FileValues, "set-file", nil, "set a chart value from a file's content, key=path (repeatable)")
	fl.StringArrayVarP(&f.values.ValueFiles, "values", "f", nil, "values YAML file (repeatable; later files win)")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print the manifests (Secrets redacted) and change nothing; needs no cluster")
	fl.BoolVar(&f.upgrade, "upgrade", false, "upgrade the release when it exists (values given before are kept unless overridden)")
	fl.DurationVar(&f.timeout, "timeout", 5*time.Minute, "how long Helm may take")
	fl.StringVar(&f.logLevel, "log-level", "warn", "debug, info, warn or error")
	return cmd
}

func runInstall(cmd *cobra.Command, f installFlags) error {
	vals, err := f.mergeValues()
	if err != nil {
		return err
	}
	ch, err := install.LoadChart()
	if err != nil {
		return err
	}
	ns := f.target.Namespace
	if ns == "" {
		ns = install.DefaultNamespace
	}
	if f.dryRun {
		rel, err := install.Render(ch, ns, vals)
		if err != nil {
			return err
		}
		m, err := install.Manifest(rel)
		if err != nil {
			return err
		}
		_, err = io.WriteString(cmd.OutOrStdout(), m+"\n")
		return err
	}
	if err := f.join(cmd, vals); err != nil {
		return err
	}
	f.target.Log = logger(f.logLevel)
	excludeLabel, _ := vals["clusterExcludeLabel"].(string)
	rel, err := install.Install(cmd.Context(), ch, install.Options{Target: f.target, Values: vals, Upgrade: f.upgrade,
		ExcludeLabel: excludeLabel, Timeout: f.timeout})
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	verb := "installed"
	if rel.Version > 1 {
		verb = "upgraded"
	}
	fmt.Fprintf(out, "vigil: %s release %s (revision %d) in namespace %s\n", verb, rel.Name, rel.Version, rel.Namespace)
	objs, err := install.Objects(rel.Manifest)
	if err != nil {
		return err
	}
	for _, o := range objs {
		fmt.Fprintf(out, "  %s\n", o)
	}
	if rel.Info != nil && rel.Info.Notes != "" {
		fmt.Fprintf(out, "\n%s\n", strings.TrimSpace(rel.Info.Notes))
	}
	return nil
}

// join creates the cluster on the server and puts its join credential
// into the values (the vigil-join Secret), unless a credential was given
// or --upgrade keeps the one installed. One command onboards a cluster.
func (f installFlags) join(cmd *cobra.Command, vals map[string]any) error {
	jc, _ := vals["joinCredential"].(map[string]any)
	if v, _ := jc["value"].(string); v != "" || f.upgrade {
		return nil
	}
	if s, _ := jc["existingSecret"].(string); s != "" {
		return nil
	}
	server, _ := vals["serverURL"].(string)
	name, _ := vals["clusterName"].(string)
	if server == "" || name == "" {
		return errors.New("no join credential: pass --credential-file, or --server, --cluster and an admin --token to create the cluster")
	}
	c := clientFlags{server: server, token: f.token}
	if _, err := c.resolveToken(); err != nil {
		return fmt.Errorf("no join credential (--credential-file) and no admin token to create cluster %s on %s: %w", name, server, err)
	}
	var out struct {
		Credential string `json:"credential"`
	}
	if err := c.call(cmd.Context(), "POST", "/api/v1/clusters", nil, map[string]string{"name": name}, &out); err != nil {
		return fmt.Errorf("create cluster %s on %s (if it exists, pass its --credential-file): %w", name, server, err)
	}
	if jc == nil {
		jc = map[string]any{}
		vals["joinCredential"] = jc
	}
	jc["value"] = out.Credential
	fmt.Fprintf(cmd.ErrOrStderr(), "vigil: cluster %s created on %s; its credential is in Secret vigil-join\n", name, server)
	return nil
}

// mergeValues builds the chart values: files, --set*, then the flags.
func (f installFlags) mergeValues() (map[string]any, error) {
	vals, err := f.values.MergeValues(getter.Providers{})
	if err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	if f.server != "" {
		vals["serverURL"] = f.server
	}
	if f.cluster != "" {
		vals["clusterName"] = f.cluster
	}
	if f.credentialFile != "" {
		cred, err := readSecretFile(f.credentialFile, "--credential-file")
		if err != nil {
			return nil, err
		}
		jc, _ := vals["joinCredential"].(map[string]any)
		if jc == nil {
			jc = map[string]any{}
			vals["joinCredential"] = jc
		}
		jc["value"] = cred
	}
	if f.proxyFile != "" {
		p, err := readSecretFile(f.proxyFile, "--proxy-file")
		if err != nil {
			return nil, err
		}
		vals["proxy"] = p
	}
	if p, _ := vals["proxy"].(string); p != "" {
		if err := checkProxyURL(p); err != nil {
			return nil, err
		}
	}
	if s, _ := vals["serverURL"].(string); s != "" {
		if u, err := url.Parse(s); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("--server %q: want https://HOST[:PORT]", s)
		}
	}
	return vals, nil
}

// readSecretFile reads a protected setting from a file; errors never
// contain the content.
func readSecretFile(path, flag string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flag, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s %s: the file is empty", flag, path)
	}
	return s, nil
}

// checkProxyURL checks the proxy's shape without ever printing it: it may
// hold a password.
func checkProxyURL(p string) error {
	u, err := url.Parse(p)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("proxy: want http(s)://[user:password@]host:port (the value is not shown: it is a protected setting)")
	}
	return nil
}

func uninstallCmd() *cobra.Command {
	var (
		o        install.UninstallOptions
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "uninstall [--keep-data]",
		Short: "Remove Vigil from the cluster: the webhook configuration first, then everything else",
		Long: `Remove Vigil from the cluster of the current kubeconfig. The
ValidatingWebhookConfiguration goes first, so the API server never waits on a
webhook whose agent is going away; then the Helm release "vigil"; then what
the agent made at run time (its serving-certificate Secret) and the server's
database (the PersistentVolumeClaim vigil-server-data) unless --keep-data.
It then waits until nothing labelled app.kubernetes.io/part-of=vigil is
left, and fails listing whatever still is after --timeout. The namespace
stays. Running it again finishes an interrupted uninstall.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Log = logger(logLevel)
			rep, err := install.Uninstall(cmd.Context(), o)
			out := cmd.OutOrStdout()
			if rep != nil {
				if rep.WebhookDeleted {
					fmt.Fprintf(out, "vigil: deleted ValidatingWebhookConfiguration %s\n", install.WebhookName)
				}
				if rep.Release {
					fmt.Fprintf(out, "vigil: uninstalled release %s from namespace %s\n", install.Release, o.Namespace)
				} else {
					fmt.Fprintf(out, "vigil: no release %s in namespace %s\n", install.Release, o.Namespace)
				}
				for _, k := range rep.Kept {
					fmt.Fprintf(out, "vigil: kept %s (--keep-data)\n", k)
				}
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(out, "vigil: nothing labelled "+install.PartOfLabel+" is left")
			return nil
		},
	}
	fl := cmd.Flags()
	registerTarget(cmd, &o.Target)
	fl.BoolVar(&o.KeepData, "keep-data", false, "keep the server's data (the PersistentVolumeClaim vigil-server-data)")
	fl.DurationVar(&o.Timeout, "timeout", 2*time.Minute, "how long to wait for everything to be gone")
	fl.StringVar(&logLevel, "log-level", "warn", "debug, info, warn or error")
	return cmd
}
