package detect

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// catalogDoc is docs/DETECTIONS.md, the map from Defender for Containers'
// alerts to Vigil's rules, relative to this package's directory (where go
// test runs); it cannot be embedded from outside the package.
var catalogDoc = filepath.Join("..", "..", "docs", "DETECTIONS.md")

// catalogID is a rule id written as code on the page: `runtime.web-shell`.
var catalogID = regexp.MustCompile("`((?:runtime|audit)\\.[a-z0-9]+(?:-[a-z0-9]+)*)`")

// docRuleIDs returns the rule ids the page names, with the line of their
// first mention, and the Defender alert types (K8S.NODE_X, K8S_X) it
// lists.
func docRuleIDs(t *testing.T) (ids map[string]int, alerts map[string]bool) {
	t.Helper()
	data, err := os.ReadFile(catalogDoc)
	if err != nil {
		t.Fatalf("the detection catalog page: %v", err)
	}
	ids, alerts = map[string]int{}, map[string]bool{}
	alertType := regexp.MustCompile("`(K8S(?:\\.NODE)?_[A-Za-z0-9_]+)`")
	for i, line := range strings.Split(string(data), "\n") {
		for _, m := range catalogID.FindAllStringSubmatch(line, -1) {
			if _, ok := ids[m[1]]; !ok {
				ids[m[1]] = i + 1
			}
		}
		for _, m := range alertType.FindAllStringSubmatch(line, -1) {
			alerts[m[1]] = true
		}
	}
	return ids, alerts
}

// docs/DETECTIONS.md stays true: every rule id it names is a built-in
// rule, and every built-in rule is named on it.
func TestCatalogDocMatchesRules(t *testing.T) {
	files, err := builtinFiles()
	if err != nil {
		t.Fatal(err)
	}
	builtin := map[string]bool{}
	for _, f := range files {
		for _, r := range f.Rules {
			builtin[r.ID] = true
		}
	}
	if _, err := Load(Options{}); err != nil {
		t.Fatal(err)
	}
	ids, alerts := docRuleIDs(t)
	var unknown []string
	for id, line := range ids {
		if !builtin[id] {
			unknown = append(unknown, fmt.Sprintf("%s (line %d)", id, line))
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		t.Errorf("%s names rules that are not built in: %s", catalogDoc, strings.Join(unknown, ", "))
	}
	var missing []string
	for id := range builtin {
		if _, ok := ids[id]; !ok {
			missing = append(missing, id)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("built-in rules missing from %s (add each to its Defender alert's row, or to §5): %s", catalogDoc, strings.Join(missing, ", "))
	}
	// The page covers Defender's whole catalog: the 2024 runtime types and
	// the control-plane types of the reference.
	for _, a := range []string{
		"K8S.NODE_NamespaceCreation", "K8S.NODE_HistoryFileCleared", "K8S.NODE_SuspectConnection", "K8S.NODE_TimerServiceDisabled",
		"K8S.NODE_CommonBot", "K8S.NODE_PrivilegedExecutionInContainer", "K8S.NODE_PrivilegedContainerArtifacts",
		"K8S.NODE_SuspectDownload", "K8S.NODE_SuspectDownloadArtifacts", "K8S.NODE_SuspectNohup", "K8S.NODE_SuspectUserAddition",
		"K8S.NODE_DigitalCurrencyMining", "K8S.NODE_ImageBuildOnNode", "K8S.NODE_KnownLinuxDDoSToolkit", "K8S.NODE_EICAR",
		"K8S.NODE_KnownLinuxAttackTool", "K8S.NODE_LinuxBackdoorArtifact", "K8S.NODE_ExploitAttempt",
		"K8S.NODE_KnownLinuxCredentialAccessTool", "K8S.NODE_CryptoCoinMinerDownload", "K8S.NODE_SystemLogRemoval",
		"K8S.NODE_SuspectPasswordChange", "K8S.NODE_SuspectPortForwarding", "K8S.NODE_ReverseShell",
		"K8S.NODE_CryptoCoinMinerArtifacts", "K8S.NODE_SshKeyAccess", "K8S.NODE_SuspectProcessTermination",
		"K8S.NODE_ContainerSSH", "K8S.NODE_TimestampTampering", "K8S.NODE_KubernetesAPI", "K8S.NODE_KubernetesDashboard",
		"K8S.NODE_CryptoCoinMinerExecution", "K8S.NODE_SuspectPasswordFileAccess", "K8S.NODE_Webshell",
		"K8S.NODE_ReconnaissanceArtifactsBurst", "K8S.NODE_DownloadAndRunCombo", "K8S.NODE_KubeConfigAccess",
		"K8S.NODE_ImdsCall", "K8S.NODE_MitreCalderaTools",
		"K8S_ExposedDashboard", "K8S_ExposedKubeflow", "K8S_ExposedService", "K8S_ExposedRedis",
		"K8S_ExposedPostgresTrustAuth", "K8S_ExposedPostgresBroadIPRange", "K8S_HighPrivilegesRole", "K8S_ClusterAdminBinding",
		"K8S_SensitiveMount", "K8S_PrivilegedContainer", "K8S_KubeSystemContainer", "K8S_MaliciousContainerImage",
		"K8S_DeleteEvents", "K8S_PenTestToolsKubeHunter", "K8S_AdmissionController", "K8S_CoreDnsModification", "K8S_TI_Proxy",
		"K8S_ServiceAccountRareOperation", "K8S_AbnormalMiActivity", "K8S_AnomalousPodDeployment",
		"K8S_ServiceAcountPermissionAnomaly", "K8S_AnomalousSecretAccess",
	} {
		if !alerts[a] {
			t.Errorf("%s does not list Defender's %s", catalogDoc, a)
		}
	}
	t.Logf("%d rule ids named, %d built-in rules, %d Defender alert types", len(ids), len(builtin), len(alerts))
}
