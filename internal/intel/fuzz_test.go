package intel

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary update files to the parser: it must never panic,
// and whatever it accepts must be matchable.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		"",
		"[miner-pools]\npool.example.net\n",
		"[malicious-ips]\n192.0.2.0/24\n2001:db8::/32\n198.51.100.1\n",
		"[miner-ports]\n3333\n65535\n",
		"[attack-tools]\nLinPEAS.sh # note\n",
		"\ufeff[ scanners ]\r\nnmap\r\n",
		"[]\n", "[x\n", "entry\n", "[miner-ports]\n0\n", "[malicious-ips]\n1.2.3.4/8\n",
		"[miner-pools]\n*.a.b\n", "[miner-pools]\n1.2.3.4\n", "# \xff\n", "a\x00b\n",
	} {
		f.Add([]byte(seed))
	}
	base := Default()
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Load(bytes.NewReader(data))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "line ") {
				t.Fatalf("error without a line number: %v", err)
			}
			return
		}
		// Every entry the file added is found by its own lookup, and the
		// shipped data is still there.
		for i, c := range catalog {
			l, shipped := &s.lists[i], &base.lists[i]
			switch c.kind {
			case kindDomain:
				for d := range l.strs {
					if _, ok := shipped.strs[d]; ok {
						continue
					}
					if !s.Domain(c.name, d) || !s.Domain(c.name, "x."+strings.ToUpper(d)+".") {
						t.Fatalf("%s: entry %q does not match itself", c.name, d)
					}
					if got, ok := s.FindDomain(c.name, "curl https://"+d+":1/"); !ok || got != d {
						t.Fatalf("%s: FindDomain misses entry %q (got %q)", c.name, d, got)
					}
				}
			case kindName:
				for n := range l.strs {
					if _, ok := shipped.strs[n]; ok {
						continue
					}
					if !s.Tool(c.name, n) || !s.Tool(c.name, "/bin/"+strings.ToUpper(n)) {
						t.Fatalf("%s: entry %q does not match itself", c.name, n)
					}
				}
			case kindPort:
				for p := range l.ports {
					if !s.MinerPort(int(p)) {
						t.Fatalf("port %d does not match itself", p)
					}
				}
			case kindIP:
				for _, g := range l.nets {
					for p := range g.set {
						if !s.MaliciousIP(p.Addr().String()) {
							t.Fatalf("prefix %s does not match its first address", p)
						}
					}
				}
			}
			if l.len() < shipped.len() {
				t.Fatalf("%s lost shipped entries", c.name)
			}
		}
	})
}

// FuzzFindDomain checks that scanning arbitrary text never panics and that
// whatever it reports is a substring of the text that the list matches.
func FuzzFindDomain(f *testing.F) {
	for _, seed := range []string{
		"curl -s http://x.supportxmr.com:3333/a",
		"xmrig -o stratum+tcp://POOL.SupportXMR.com.:443",
		"supportxmr.com.evil.example",
		"-opool.hashvault.pro",
		"..--..",
		strings.Repeat("a.", 200) + "nanopool.org",
		"user@abc.oast.fun",
		"\xff\xfe.supportxmr.com",
	} {
		f.Add(seed)
	}
	s := Default()
	f.Fuzz(func(t *testing.T, text string) {
		for _, list := range []string{"miner-pools", "oast-domains", "malicious-domains"} {
			host, ok := s.FindDomain(list, text)
			if !ok {
				if host != "" {
					t.Fatalf("no match but host %q", host)
				}
				continue
			}
			if !strings.Contains(text, host) {
				t.Fatalf("%s: %q is not in the text", list, host)
			}
			if !s.Domain(list, host) {
				t.Fatalf("%s: found %q, which Domain rejects", list, host)
			}
		}
		if ip, ok := s.FindIP(text); ok && (!strings.Contains(text, ip) || !s.MaliciousIP(ip)) {
			t.Fatalf("FindIP found %q, which is not in the text or not malicious", ip)
		}
		checkScanText(t, s, text)
	})
}
