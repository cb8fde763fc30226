package intel

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadMerges(t *testing.T) {
	base := Default()
	before := base.Lists()
	s, err := Load(strings.NewReader("\ufeff# exported from our feed\r\n" +
		"[miner-pools]\r\n" +
		"  Pool.Mine.Example.   # case and trailing dot are folded\r\n" +
		"supportxmr.com\r\n" + // already shipped: no double count
		"\n" +
		"[ malicious-ips ]\n" +
		"192.0.2.0/24\n" +
		"2001:db8::1\n" +
		"[miner-ports]\n" +
		"65000\n" +
		"[scanners]\n" +
		"Our-Scanner\n"))
	if err != nil {
		t.Fatal(err)
	}
	after := s.Lists()
	for name, n := range map[string]int{"miner-pools": 1, "malicious-ips": 2, "miner-ports": 1, "scanners": 1} {
		if after[name] != before[name]+n {
			t.Errorf("%s: %d entries, want %d + %d", name, after[name], before[name], n)
		}
	}
	if !s.MinerPool("x.pool.mine.example") || !s.MaliciousIP("192.0.2.9") || !s.MaliciousIP("2001:db8::1") ||
		!s.MinerPort(65000) || !s.Scanner("our-scanner") {
		t.Error("an update-file entry does not match")
	}
	if !s.MinerPool("supportxmr.com") || !s.MaliciousIP("195.3.146.118") {
		t.Error("a shipped entry was lost")
	}
	// The base Set is untouched.
	if base.MinerPool("pool.mine.example") || base.MaliciousIP("192.0.2.9") || base.MinerPort(65000) {
		t.Error("Load modified Default()")
	}
	if got := base.Lists(); got["miner-pools"] != before["miner-pools"] {
		t.Error("Load changed Default()'s counts")
	}
}

func TestWithFile(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.intel")
	b := filepath.Join(dir, "b.intel")
	if err := os.WriteFile(a, []byte("[oast-domains]\ncallback.example\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, []byte("[attack-tools]\nour-tool\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s1, err := Default().WithFile(a)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := s1.WithFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !s2.OASTDomain("x.callback.example") || !s2.AttackTool("our-tool") || !s2.OASTDomain("oast.fun") {
		t.Error("stacked update files do not both apply")
	}
	if s1.AttackTool("our-tool") {
		t.Error("WithFile modified its receiver")
	}

	_, err = Default().WithFile(filepath.Join(dir, "missing"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v, want ErrNotExist", err)
	}

	bad := filepath.Join(dir, "bad.intel")
	if err := os.WriteFile(bad, []byte("[miner-ports]\n3333\nhttp\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Default().WithFile(bad)
	var pe *ParseError
	if !errors.As(err, &pe) || pe.File != bad || pe.Line != 3 || !strings.HasPrefix(err.Error(), bad+":3: ") {
		t.Errorf("bad file: err = %v, want a ParseError at %s:3", err, bad)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, in string
		line     int
		want     string // substring of the message
	}{
		{"unknown list", "[miner-pool]\nx.com\n", 1, `unknown list "miner-pool"`},
		{"empty section", "[]\n", 1, "empty section name"},
		{"blank section", "[  ]\n", 1, "empty section name"},
		{"unclosed section", "[miner-pools\n", 1, "no closing ]"},
		{"entry before section", "# c\n\nsupportxmr.com\n", 3, "before the first [list] section"},
		{"two entries", "[scanners]\nnmap masscan\n", 2, "one entry per line"},
		{"bad port word", "[miner-ports]\nstratum\n", 2, "not a port"},
		{"port zero", "[miner-ports]\n0\n", 2, "not a port"},
		{"port too big", "[miner-ports]\n65536\n", 2, "not a port"},
		{"port too long", "[miner-ports]\n000003333\n", 2, "not a port"},
		{"port sign", "[miner-ports]\n+3333\n", 2, "not a port"},
		{"port range", "[miner-ports]\n3333-3340\n", 2, "not a port"},
		{"bad ip", "[malicious-ips]\n192.0.2.256\n", 2, "192.0.2.256"},
		{"short ip", "[malicious-ips]\n192.0.2\n", 2, "192.0.2"},
		{"bad cidr", "[malicious-ips]\n192.0.2.0/33\n", 2, "192.0.2.0/33"},
		{"cidr host bits", "[malicious-ips]\n192.0.2.1/24\n", 2, "host bits set; the prefix is 192.0.2.0/24"},
		{"v6 cidr host bits", "[malicious-ips]\n2001:db8::1/32\n", 2, "host bits set"},
		{"zone", "[malicious-ips]\nfe80::1%eth0\n", 2, "zones are not allowed"},
		{"mapped", "[malicious-ips]\n::ffff:192.0.2.1\n", 2, "IPv4-mapped"},
		{"mapped prefix", "[malicious-ips]\n::ffff:192.0.2.0/120\n", 2, "IPv4-mapped"},
		{"hostname as ip", "[malicious-ips]\nevil.example\n", 2, "evil.example"},
		{"ip as domain", "[malicious-domains]\n192.0.2.1\n", 2, "is an IP address"},
		{"v6 as domain", "[malicious-domains]\n2001:db8::1\n", 2, "is an IP address"},
		{"numeric tld", "[miner-pools]\n1.2.3\n", 2, "last label is numeric"},
		{"single label", "[miner-pools]\nlocalhost\n", 2, "at least two labels"},
		{"wildcard", "[miner-pools]\n*.supportxmr.com\n", 2, `drop the "*."`},
		{"url", "[miner-pools]\nhttps://supportxmr.com/\n", 2, "without a scheme"},
		{"port in domain", "[miner-pools]\nsupportxmr.com:3333\n", 2, "not allowed in a host name"},
		{"empty label", "[miner-pools]\npool..supportxmr.com\n", 2, "labels must be 1 to 63 bytes"},
		{"long label", "[miner-pools]\n" + strings.Repeat("a", 64) + ".com\n", 2, "labels must be 1 to 63 bytes"},
		{"long domain", "[miner-pools]\n" + strings.Repeat("a.", 127) + "com\n", 2, "longer than 253 bytes"},
		{"hyphen label", "[miner-pools]\n-pool.supportxmr.com\n", 2, "cannot start or end with '-'"},
		{"non-ascii domain", "[miner-pools]\npoöl.example\n", 2, "not allowed in a host name"},
		{"name with dir", "[attack-tools]\n/usr/bin/nmap\n", 2, "base name"},
		{"name dot", "[attack-tools]\n..\n", 2, "not an executable name"},
		{"non-ascii name", "[attack-tools]\nnmäp\n", 2, "printable ASCII"},
		{"long name", "[attack-tools]\n" + strings.Repeat("x", 256) + "\n", 2, "longer than 255 bytes"},
		{"control byte", "[scanners]\nnmap\x00\n", 2, "non-printable byte 0x00 at column 5"},
		{"escape in comment", "[scanners]\n# \x1b[31mred\n", 2, "non-printable byte 0x1b"},
		{"bare CR", "[scanners]\nnmap\rmasscan\n", 2, "non-printable byte 0x0d"},
		{"DEL", "[scanners]\nnm\x7fap\n", 2, "non-printable byte 0x7f"},
		{"invalid utf-8", "[scanners]\n# \xff\xfe\n", 2, "invalid UTF-8"},
		{"long line", "[scanners]\n#" + strings.Repeat("x", MaxLineLength) + "\n", 2, "line longer than 4096 bytes"},
		{"long line no newline", "[scanners]\n" + strings.Repeat("x", MaxLineLength+1), 2, "line longer than 4096 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(tt.in))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a ParseError", err)
			}
			if pe.Line != tt.line || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want line %d and %q", err, tt.line, tt.want)
			}
			if pe.File != "" || !strings.HasPrefix(err.Error(), "line ") {
				t.Errorf("Load error %q should name the line only", err)
			}
		})
	}
}

func TestLoadAccepts(t *testing.T) {
	for name, in := range map[string]string{
		"empty":               "",
		"comments only":       "# nothing\n\n   # indented\n",
		"empty section":       "[miner-pools]\n[scanners]\n",
		"no final newline":    "[scanners]\nnmap",
		"line at the limit":   "[scanners]\n#" + strings.Repeat("x", MaxLineLength-1) + "\n",
		"tabs and spaces":     "\t[ scanners ]\t\n\t nmap \t# note\n",
		"utf-8 comment":       "# Überwachung — 監視\n",
		"underscore domain":   "[malicious-domains]\n_dmarc.evil.example\n",
		"section reopened":    "[scanners]\na\n[miner-pools]\nb.example\n[scanners]\nc\n",
		"v4 and v6 /0 and /1": "[malicious-ips]\n0.0.0.0/1\n::/1\n",
	} {
		if _, err := Load(strings.NewReader(in)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestLoadTooLarge(t *testing.T) {
	// A file of blank lines is otherwise valid, so only the size rejects it.
	big := bytes.Repeat([]byte("\n"), MaxFileSize+1)
	_, err := Load(bytes.NewReader(big))
	if err == nil || !strings.Contains(err.Error(), "larger than the 16 MiB limit") {
		t.Errorf("err = %v, want the size limit", err)
	}
	if _, err := Load(bytes.NewReader(big[:MaxFileSize])); err != nil {
		t.Errorf("a file at the limit: %v", err)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestLoadReadError(t *testing.T) {
	_, err := Load(failingReader{})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("err = %v, want the read error", err)
	}
}

func TestEmbeddedFormat(t *testing.T) {
	// Data files hold one list each and may not switch lists.
	s := newSet()
	err := s.parse("data/scanners.txt", []byte("nmap\n[miner-pools]\n"), "scanners")
	if err == nil || !strings.Contains(err.Error(), "data/scanners.txt:2: section header in a data file") {
		t.Errorf("err = %v", err)
	}
}
