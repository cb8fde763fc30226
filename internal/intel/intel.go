package intel

import (
	"embed"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
)

// kind is what a list holds, which decides how its entries are checked and
// matched.
type kind uint8

const (
	kindDomain kind = iota // host names; an entry matches itself and its subdomains
	kindName               // executable base names
	kindPort               // TCP ports
	kindIP                 // addresses and CIDR prefixes
)

// Indexes into Set.lists and catalog.
const (
	iMinerPools = iota
	iMinerPorts
	iMinerBinaries
	iAttackTools
	iScanners
	iCredentialTools
	iDDoSTools
	iProxyware
	iOASTDomains
	iMaliciousDomains
	iMaliciousIPs
	numLists
)

// catalog names every list and says what it holds. The names appear as
// update-file sections, as data/ file names and in Lists.
var catalog = [numLists]struct {
	name string
	kind kind
}{
	iMinerPools:       {"miner-pools", kindDomain},
	iMinerPorts:       {"miner-ports", kindPort},
	iMinerBinaries:    {"miner-binaries", kindName},
	iAttackTools:      {"attack-tools", kindName},
	iScanners:         {"scanners", kindName},
	iCredentialTools:  {"credential-tools", kindName},
	iDDoSTools:        {"ddos-tools", kindName},
	iProxyware:        {"proxyware", kindName},
	iOASTDomains:      {"oast-domains", kindDomain},
	iMaliciousDomains: {"malicious-domains", kindDomain},
	iMaliciousIPs:     {"malicious-ips", kindIP},
}

// index maps a list name to its position in Set.lists. It is built once and
// never written after, so reading it from many goroutines is safe.
var index = func() map[string]int {
	m := make(map[string]int, numLists)
	for i, c := range catalog {
		m[c.name] = i
	}
	return m
}()

// Names returns the names of all lists, sorted. The names are fixed by this
// package: an update file can add entries to them but not add lists, so a
// rule engine can check the list names its rules use once, at compile time.
func Names() []string {
	names := make([]string, 0, numLists)
	for _, c := range catalog {
		names = append(names, c.name)
	}
	slices.Sort(names)
	return names
}

// Set is one snapshot of threat intelligence: the embedded lists, plus the
// entries of any update files it was built with. A Set is immutable once
// built, so it is safe for concurrent use. Lookups do not allocate; only
// FindIP and MaliciousIP on text that looks like an address but is not one
// (999.1.1.1) allocate, for netip's error. The zero Set holds no entries.
type Set struct {
	lists [numLists]list
	// domains indexes the domain lists together for the text scans: every
	// entry maps to the bits (domainBit) of the lists holding it, and every
	// suffix of an entry that starts a label and has at least two labels
	// is present too (with no bits unless it is an entry itself), so that
	// a walk over a host's suffixes, shortest first, can stop at the first
	// one missing. Built once the lists are complete (buildDomains).
	domains map[string]Found
}

// list holds one list's entries; which field is used depends on the kind.
type list struct {
	strs  map[string]struct{} // kindDomain, kindName: lower-case entries
	ports map[uint16]struct{} // kindPort
	nets  []prefixGroup       // kindIP: one group per family and prefix length
}

// prefixGroup holds the prefixes of one family and length, masked, so that
// an address matches when its own prefix of that length is in the set. An
// address lookup costs one map probe per group, not one per entry.
type prefixGroup struct {
	bits int
	is6  bool
	set  map[netip.Prefix]struct{}
}

func (l *list) len() int {
	n := len(l.strs) + len(l.ports)
	for _, g := range l.nets {
		n += len(g.set)
	}
	return n
}

func (l *list) addPrefix(p netip.Prefix) {
	is6 := p.Addr().Is6()
	for _, g := range l.nets {
		if g.bits == p.Bits() && g.is6 == is6 {
			g.set[p] = struct{}{}
			return
		}
	}
	l.nets = append(l.nets, prefixGroup{p.Bits(), is6, map[netip.Prefix]struct{}{p: {}}})
}

func newSet() *Set {
	s := &Set{}
	for i, c := range catalog {
		switch c.kind {
		case kindDomain, kindName:
			s.lists[i].strs = map[string]struct{}{}
		case kindPort:
			s.lists[i].ports = map[uint16]struct{}{}
		}
	}
	return s
}

func (s *Set) clone() *Set {
	c := newSet()
	for i := range s.lists {
		from, to := &s.lists[i], &c.lists[i]
		maps.Copy(to.strs, from.strs)
		maps.Copy(to.ports, from.ports)
		for _, g := range from.nets {
			to.nets = append(to.nets, prefixGroup{g.bits, g.is6, maps.Clone(g.set)})
		}
	}
	return c
}

//go:embed data/*.txt
var embedded embed.FS

// Default returns the threat intelligence shipped in the binary. It is
// parsed on first use and shared: callers must not expect a fresh copy. It
// panics if the embedded data is malformed, which a test rules out.
func Default() *Set { return loadDefault() }

var loadDefault = sync.OnceValue(func() *Set {
	s, err := parseEmbedded(embedded)
	if err != nil {
		panic("intel: embedded data: " + err.Error())
	}
	return s
})

// parseEmbedded reads data/<list>.txt for every list. Each file holds the
// entries of the list it is named after, with no section headers; a missing
// or unknown file is an error so that the data and the catalog cannot drift.
func parseEmbedded(fsys embed.FS) (*Set, error) {
	s := newSet()
	entries, err := fsys.ReadDir("data")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".txt")
		if _, ok := index[name]; !ok {
			return nil, errorf("data/"+e.Name(), 0, "no list named %q", name)
		}
		data, err := fsys.ReadFile("data/" + e.Name())
		if err != nil {
			return nil, err
		}
		if err := s.parse("data/"+e.Name(), data, name); err != nil {
			return nil, err
		}
		seen[name] = true
	}
	for _, c := range catalog {
		if !seen[c.name] {
			return nil, errorf("data/"+c.name+".txt", 0, "missing")
		}
	}
	s.buildDomains()
	return s, nil
}

// Load returns the embedded intelligence plus the entries of the update
// file read from r (format in the package documentation). Errors name the
// offending line as "line N"; use WithFile to have them name the file.
func Load(r io.Reader) (*Set, error) {
	return Default().with("", r)
}

// WithFile returns a new Set holding s's entries plus those of the update
// file at path; s itself is unchanged. Calling it once per --intel flag
// stacks several files. Errors name the file and line.
func (s *Set) WithFile(path string) (*Set, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load intel: %w", err)
	}
	defer f.Close()
	return s.with(path, f)
}

func (s *Set) with(name string, r io.Reader) (*Set, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, errorf(name, 0, "read: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, errorf(name, 0, "larger than the %d MiB limit for an update file", MaxFileSize>>20)
	}
	c := s.clone()
	if err := c.parse(name, data, ""); err != nil {
		return nil, err
	}
	c.buildDomains()
	return c, nil
}

// Lists returns every list's name and number of entries, e.g. for a
// `vigil rules list`-style report. The map is the caller's to keep.
func (s *Set) Lists() map[string]int {
	m := make(map[string]int, numLists)
	for i, c := range catalog {
		m[c.name] = s.lists[i].len()
	}
	return m
}

// MinerPool reports whether host is a known mining-pool domain or one of
// its subdomains. host is a bare host name (no port, no scheme); case and a
// trailing dot are ignored, and IP literals never match.
func (s *Set) MinerPool(host string) bool { return matchDomain(s.lists[iMinerPools].strs, host) }

// OASTDomain reports whether host is an out-of-band testing service's domain
// or one of its subdomains, with MinerPool's rules for host.
func (s *Set) OASTDomain(host string) bool { return matchDomain(s.lists[iOASTDomains].strs, host) }

// MaliciousDomain reports whether host is a known malicious domain or one of
// its subdomains, with MinerPool's rules for host.
func (s *Set) MaliciousDomain(host string) bool {
	return matchDomain(s.lists[iMaliciousDomains].strs, host)
}

// Domain reports whether host matches the named domain list, with
// MinerPool's rules for host. It reports false for an unknown list or one
// that does not hold domains.
func (s *Set) Domain(list, host string) bool {
	i, ok := index[list]
	if !ok || catalog[i].kind != kindDomain {
		return false
	}
	return matchDomain(s.lists[i].strs, host)
}

// MinerPort reports whether port is a common mining-pool stratum port. On
// its own that is weak evidence; see data/miner-ports.txt.
func (s *Set) MinerPort(port int) bool {
	if port <= 0 || port > 65535 {
		return false
	}
	_, ok := s.lists[iMinerPorts].ports[uint16(port)]
	return ok
}

// MinerBinary reports whether name is a known miner executable. name is an
// executable's base name; a directory part is ignored, and so is case.
func (s *Set) MinerBinary(name string) bool { return matchName(s.lists[iMinerBinaries].strs, name) }

// AttackTool reports whether name is a known offensive or post-exploitation
// tool, with MinerBinary's rules for name.
func (s *Set) AttackTool(name string) bool { return matchName(s.lists[iAttackTools].strs, name) }

// Scanner reports whether name is a known network or vulnerability scanner,
// with MinerBinary's rules for name.
func (s *Set) Scanner(name string) bool { return matchName(s.lists[iScanners].strs, name) }

// CredentialTool reports whether name is a known password cracker,
// brute-forcer or credential dumper, with MinerBinary's rules for name.
func (s *Set) CredentialTool(name string) bool {
	return matchName(s.lists[iCredentialTools].strs, name)
}

// DDoSTool reports whether name is a known denial-of-service tool, with
// MinerBinary's rules for name.
func (s *Set) DDoSTool(name string) bool { return matchName(s.lists[iDDoSTools].strs, name) }

// Proxyware reports whether name is a known bandwidth-sharing client, with
// MinerBinary's rules for name.
func (s *Set) Proxyware(name string) bool { return matchName(s.lists[iProxyware].strs, name) }

// Tool reports whether name is in the named executable-name list, with
// MinerBinary's rules for name. It reports false for an unknown list or one
// that does not hold executable names.
func (s *Set) Tool(list, name string) bool {
	i, ok := index[list]
	if !ok || catalog[i].kind != kindName {
		return false
	}
	return matchName(s.lists[i].strs, name)
}

// MaliciousIP reports whether ip, an IPv4 or IPv6 address in text form, is
// a known malicious address or inside a known malicious prefix. An
// IPv4-mapped IPv6 address matches as IPv4, a zone is ignored, and text
// that is not an address reports false.
func (s *Set) MaliciousIP(ip string) bool {
	// Reject what cannot be an address before ParseAddr, which allocates
	// its error.
	for i := 0; i < len(ip); i++ {
		if !ipByte[ip[i]] {
			if ip[i] == '%' && i > 0 {
				break // a zone
			}
			return false
		}
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	return s.lists[iMaliciousIPs].matchAddr(a)
}

func (l *list) matchAddr(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	is6 := a.Is6()
	for _, g := range l.nets {
		if g.is6 != is6 {
			continue
		}
		p, err := a.Prefix(g.bits)
		if err != nil {
			continue
		}
		if _, ok := g.set[p]; ok {
			return true
		}
	}
	return false
}

// maxDomain is the longest a DNS name can be, in its text form without a
// trailing dot.
const maxDomain = 253

// matchDomain reports whether host or one of its parent domains is in m.
// m's keys are lower case with at least two labels, so the walk stops
// before the last label. It does not allocate: a host with upper-case
// letters is folded into a stack buffer, and map lookups keyed by a
// string(bytes) conversion do not copy.
func matchDomain(m map[string]struct{}, host string) bool {
	host = strings.TrimSuffix(host, ".")
	if numericTLD(host) {
		return false // an IPv4 literal, or no host at all
	}
	// Only a suffix of at most maxDomain bytes that starts a label can be
	// a listed name; skip labels until the rest is short enough.
	for len(host) > maxDomain {
		i := strings.IndexByte(host, '.')
		if i < 0 {
			return false
		}
		host = host[i+1:]
	}
	var buf [maxDomain]byte
	folded := hasUpper(host)
	if folded {
		lower(buf[:], host)
	}
	for i := 0; ; {
		var ok bool
		if folded {
			_, ok = m[string(buf[i:len(host)])]
		} else {
			_, ok = m[host[i:]]
		}
		if ok {
			return true
		}
		j := strings.IndexByte(host[i:], '.')
		if j < 0 || strings.IndexByte(host[i+j+1:], '.') < 0 {
			return false
		}
		i += j + 1
	}
}

// maxName is the longest executable name Linux allows (NAME_MAX).
const maxName = 255

// matchName reports whether the base name of name is in m, ignoring case.
func matchName(m map[string]struct{}, name string) bool {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	if name == "" || len(name) > maxName {
		return false
	}
	if !hasUpper(name) {
		_, ok := m[name]
		return ok
	}
	var buf [maxName]byte
	lower(buf[:], name)
	_, ok := m[string(buf[:len(name)])]
	return ok
}

// numericTLD reports whether host's last label is empty or all digits. No
// real top-level domain is numeric, so such a host is an IPv4 literal (or
// garbage) and cannot be in a domain list.
func numericTLD(host string) bool {
	tld := host[strings.LastIndexByte(host, '.')+1:]
	for i := 0; i < len(tld); i++ {
		if tld[i] < '0' || tld[i] > '9' {
			return false
		}
	}
	return true
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// lower writes the ASCII lower case of s into dst, which must be long
// enough.
func lower(dst []byte, s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst[i] = c
	}
}
