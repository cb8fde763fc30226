package posture

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseConfig: configuration documents come from admins over the
// server's API (PUT /api/v1/posture/config), from files and ConfigMaps.
// Whatever ParseConfig accepts must be ready for Evaluate, encode as JSON
// (the API answers it), and evaluate the test manifests without panicking.
func FuzzParseConfig(f *testing.F) {
	seed, err := os.ReadFile(filepath.Join("testdata", "seed-config.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte("{}"))
	f.Add([]byte(""))
	f.Add([]byte("excludedNamespaces: [kube-system]\nexcludedImages: ['registry.example.com/*']\n"))
	f.Add([]byte(`{"recommendations":{"no-privileged":{"mode":"deny","namespaces":["shop"],"labelSelector":{"matchExpressions":[{"key":"app","operator":"In","values":["web"]}]}}}}`))
	f.Add([]byte("recommendations:\n  cpu-memory-limits: {parameters: {cpuLimit: '2', memoryLimit: 1Gi}}\n  least-capabilities: {parameters: {allowedCapabilities: ['*'], requiredDropCapabilities: [cap_net_raw]}}\n"))
	f.Add([]byte("recommendations:\n  allowed-host-paths: {parameters: {allowedHostPaths: [{pathPrefix: /var/log, readOnly: true}]}}\n  no-host-network-ports: {parameters: {allowHostNetwork: true, allowedHostPorts: ['1-65535']}}\n"))
	f.Add([]byte("recommendations:\n  apparmor-not-overridden: {parameters: {allowedProfiles: [localhost/*]}}\n  pss-restricted: {mode: deny, parameters: {version: v1.30}}\n  no-privileged: null\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	var objs [][]byte
	for _, name := range []string{"healthy.yaml", "unhealthy.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		objs = append(objs, b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			if c != nil {
				t.Fatalf("ParseConfig returned a config with error %v", err)
			}
			return
		}
		if !c.Validated() {
			t.Fatal("an accepted config is not validated")
		}
		if _, err := json.Marshal(c); err != nil {
			t.Fatalf("encode an accepted config: %v", err)
		}
		for _, doc := range objs {
			os, err := Decode(doc)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range os {
				Evaluate(c, o)
			}
		}
	})
}
