package intel

import (
	"net/netip"
	"strings"
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
func (s *Set) FindDomain(list, text string) (string, bool) {
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
			continue // every entry has two labels
		}
		// A host cannot start or end with '-' or '.', so a run that does
		// (-opool.example.com, "example.com.") has the host inside it.
		host := strings.Trim(text[start:pos], ".-")
		if matchDomain(m, host) {
			return host, true
		}
	}
	return "", false
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
