package intel

import (
	"net/netip"
	"strings"
	"unsafe"
)

// hostByte marks the bytes that can appear in a host name: ASCII letters,
// digits, '-', '.' and '_' (not valid in DNS host names, but common enough in
// real ones that a scanner should not split on it).
var hostByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	t['-'], t['.'], t['_'] = true, true, true
	return t
}()

// ipByte marks the bytes that can appear in an IPv4 or IPv6 address.
var ipByte = func() (t [256]bool) {
	for _, c := range "0123456789abcdefABCDEF.:" {
		t[c] = true
	}
	return t
}()

// Found says which lists a scan of free text (ScanText) found an entry of.
type Found uint8

// The lists ScanText reports on.
const (
	FoundMinerPool       Found = 1 << iota // a host on miner-pools (FindDomain("miner-pools", ...))
	FoundOASTDomain                        // a host on oast-domains
	FoundMaliciousDomain                   // a host on malicious-domains
	FoundMaliciousIP                       // an address FindIP reports
)

// foundDomains are the bits of the domain lists.
const foundDomains = FoundMinerPool | FoundOASTDomain | FoundMaliciousDomain

// domainBit returns the Found bit of list i, which must be a domain list.
func domainBit(i int) Found {
	switch i {
	case iMinerPools:
		return FoundMinerPool
	case iOASTDomains:
		return FoundOASTDomain
	case iMaliciousDomains:
		return FoundMaliciousDomain
	}
	panic("intel: no Found bit for list " + catalog[i].name)
}

// buildDomains indexes the domain lists' entries in s.domains. It runs
// once a Set's lists are complete; the Set is not changed after.
func (s *Set) buildDomains() {
	m := map[string]Found{}
	for i, c := range catalog {
		if c.kind != kindDomain {
			continue
		}
		bit := domainBit(i)
		for d := range s.lists[i].strs {
			forSuffixes(d, func(suffix string) bool {
				m[suffix] |= 0 // present: a longer suffix may be listed
				return true
			})
			m[d] |= bit
		}
	}
	s.domains = m
}

// forSuffixes calls f with the suffixes of host that start a label and
// have at least two labels, shortest first, until f returns false.
func forSuffixes(host string, f func(string) bool) {
	j := strings.LastIndexByte(host, '.')
	if j < 0 {
		return
	}
	for i := strings.LastIndexByte(host[:j], '.'); ; i = strings.LastIndexByte(host[:i], '.') {
		if !f(host[i+1:]) || i < 0 {
			return
		}
	}
}

// domainLists returns the bits of the domain lists that host, or one of its
// parent domains, is on: MinerPool's rules for host, for all domain lists
// at once. It costs one map probe per label of host that a listed name
// ends with, usually one: the walk goes from the last two labels up and
// stops at the first suffix no entry ends with.
func (s *Set) domainLists(host string) Found {
	host = strings.TrimSuffix(host, ".")
	if numericTLD(host) {
		return 0 // an IPv4 literal, or no host at all
	}
	for len(host) > maxDomain {
		i := strings.IndexByte(host, '.')
		if i < 0 {
			return 0
		}
		host = host[i+1:]
	}
	var buf [maxDomain]byte
	h := host
	if hasUpper(host) {
		lower(buf[:], host)
		h = unsafe.String(&buf[0], len(host))
	}
	// forSuffixes(h, ...), written out so that buf stays on the stack.
	j := strings.LastIndexByte(h, '.')
	if j < 0 {
		return 0
	}
	var found Found
	for i := strings.LastIndexByte(h[:j], '.'); ; i = strings.LastIndexByte(h[:i], '.') {
		bits, ok := s.domains[h[i+1:]]
		found |= bits
		if !ok || i < 0 {
			return found
		}
	}
}

// scanHosts calls f with every run of host-name bytes in text that could
// be a host (it has a dot), trimmed of leading and trailing dots and
// dashes, until f returns false. See FindDomain.
//
// Runs without a dot are most of a command line; rather than walk every
// byte, it looks for the dots (strings.IndexByte is vectorised) and grows
// a run around each.
func scanHosts(text string, f func(host string) bool) {
	for pos := 0; pos < len(text); {
		d := strings.IndexByte(text[pos:], '.')
		if d < 0 {
			return
		}
		start, end := pos+d, pos+d+1
		for start > pos && hostByte[text[start-1]] {
			start--
		}
		for end < len(text) && hostByte[text[end]] {
			end++
		}
		pos = end
		// A host cannot start or end with '-' or '.', so a run that does
		// (-opool.example.com, "example.com.") has the host inside it.
		if !f(strings.Trim(text[start:end], ".-")) {
			return
		}
	}
}

// FindDomain scans free text, such as a command line, for a host name in
// the named domain list, and returns the first one as it appears in the
// text (a substring of text, so nothing is allocated).
//
// The text is split into runs of host-name bytes; everything else (spaces,
// quotes, '/', ':', '@', '=', '%', non-ASCII) separates them, so URLs,
// user@host, host:port and --flag=host all yield their host. A run matches
// when it equals a listed domain or ends with "." plus one, ignoring case
// and surrounding dots: with supportxmr.com listed, "x.SupportXMR.com."
// matches, but "supportxmr.com.evil.example" and "notsupportxmr.com" do not.
// Nothing is decoded (percent-encoding splits a run, base64 hides it).
//
// It reports false for an unknown list or one that does not hold domains.
// ScanText answers for all domain lists (and FindIP) in one pass.
func (s *Set) FindDomain(list, text string) (string, bool) {
	i, ok := index[list]
	if !ok || catalog[i].kind != kindDomain || len(s.domains) == 0 {
		return "", false
	}
	bit := domainBit(i)
	var found string
	scanHosts(text, func(host string) bool {
		if s.domainLists(host)&bit != 0 {
			found = host
			return false
		}
		return true
	})
	return found, found != ""
}

// ScanText scans free text, such as a command line, for all the lists
// FindDomain and FindIP look for, and reports which of them it found an
// entry of: FoundMinerPool is set when FindDomain("miner-pools", text)
// reports true, and so on, and FoundMaliciousIP when FindIP does. It reads
// the text twice, once for host names and once for addresses, however many
// lists there are, and does not allocate (but see FindIP).
func (s *Set) ScanText(text string) Found {
	var found Found
	if len(s.domains) > 0 {
		scanHosts(text, func(host string) bool {
			found |= s.domainLists(host)
			return found&foundDomains != foundDomains
		})
	}
	if _, ok := s.FindIP(text); ok {
		found |= FoundMaliciousIP
	}
	return found
}

// FindIP scans free text, such as a command line, for an address that
// MaliciousIP reports, and returns the first one as it appears in the text.
// It finds IPv4 addresses (also with a ":port" suffix, as in a URL) and IPv6
// addresses (also in "[...]:port" form), but not addresses written in other
// notations (decimal, hex or octal IPv4, percent-encoding).
func (s *Set) FindIP(text string) (string, bool) {
	l := &s.lists[iMaliciousIPs]
	if len(l.nets) == 0 {
		return "", false
	}
	// The runs of address bytes that can hold an address have a dot or a
	// colon: look for those (strings.IndexByte is vectorised) and grow a
	// run around each, rather than walk every byte.
	nextDot, nextColon := -1, -1
	for pos := 0; pos < len(text); {
		if nextDot < pos && nextDot != len(text) {
			nextDot = indexFrom(text, pos, '.')
		}
		if nextColon < pos && nextColon != len(text) {
			nextColon = indexFrom(text, pos, ':')
		}
		start := min(nextDot, nextColon)
		if start == len(text) {
			break
		}
		for start > pos && ipByte[text[start-1]] {
			start--
		}
		dots, colons := 0, 0
		for pos = start; pos < len(text); pos++ {
			c := text[pos]
			if !ipByte[c] {
				break
			}
			switch c {
			case '.':
				dots++
			case ':':
				colons++
			}
		}
		// An IPv4 address has three dots, an IPv6 one at least two
		// colons: most runs (versions, times, file names) are neither,
		// and addrText would reject them.
		if dots < 3 && colons < 2 {
			continue
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

// addrText returns the part of tok, a run of hex digits, dots and colons,
// that looks like an address, or "". It filters out version numbers, times
// and hex words cheaply so that netip.ParseAddr, which allocates its errors,
// mostly sees addresses.
func addrText(tok string) string {
	tok = strings.Trim(tok, ".")
	colons := strings.Count(tok, ":")
	if colons < 2 {
		// IPv4, perhaps with a port.
		host, port, _ := strings.Cut(tok, ":")
		if colons == 1 && !allDigits(port) {
			return ""
		}
		if strings.Count(host, ".") != 3 || !allDigitsOrDots(host) {
			return ""
		}
		return host
	}
	// IPv6: eight groups, or fewer with "::", or six with an IPv4 tail.
	switch {
	case strings.Contains(tok, "::"):
		if colons > 8 {
			return ""
		}
	case colons == 7:
	case colons == 6 && strings.Contains(tok, "."):
	default:
		return ""
	}
	return tok
}

// indexFrom returns the index of the first c in text at or after pos, or
// len(text).
func indexFrom(text string, pos int, c byte) int {
	if i := strings.IndexByte(text[pos:], c); i >= 0 {
		return pos + i
	}
	return len(text)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func allDigitsOrDots(s string) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '.' {
			return false
		}
	}
	return true
}
