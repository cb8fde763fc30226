package intel

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// MaxFileSize is the largest update file Load and WithFile accept, in bytes.
const MaxFileSize = 16 << 20

// MaxLineLength is the longest line an update file may have, in bytes, not
// counting the line ending.
const MaxLineLength = 4096

// ParseError reports a malformed update file (or embedded data file). Line
// is 1-based, or 0 when the problem is the whole file.
type ParseError struct {
	File string // the path given to WithFile; empty for Load
	Line int
	Err  error
}

func (e *ParseError) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	case e.File != "":
		return fmt.Sprintf("%s: %v", e.File, e.Err)
	case e.Line > 0:
		return fmt.Sprintf("line %d: %v", e.Line, e.Err)
	}
	return e.Err.Error()
}

func (e *ParseError) Unwrap() error { return e.Err }

func errorf(file string, line int, format string, args ...any) error {
	return &ParseError{File: file, Line: line, Err: fmt.Errorf(format, args...)}
}

// parse adds the entries in data to s. An update file (fixed == "") names
// its lists in [section] headers; an embedded data file (fixed == its list)
// holds one list and may not have headers. s is left partly updated on
// error, so callers parse into a copy.
func (s *Set) parse(file string, data []byte, fixed string) error {
	cur := -1
	if fixed != "" {
		cur = index[fixed]
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // a byte-order mark from a Windows editor
	for n := 1; len(data) > 0; n++ {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > MaxLineLength {
			return errorf(file, n, "line longer than %d bytes", MaxLineLength)
		}
		for i, c := range line {
			if c < ' ' && c != '\t' || c == 0x7f {
				return errorf(file, n, "non-printable byte 0x%02x at column %d", c, i+1)
			}
		}
		if !utf8.Valid(line) {
			return errorf(file, n, "invalid UTF-8")
		}
		if i := bytes.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		text := strings.Trim(string(line), " \t")
		switch {
		case text == "":
			continue
		case text[0] == '[':
			if fixed != "" {
				return errorf(file, n, "section header in a data file; the file holds the %s list", fixed)
			}
			if !strings.HasSuffix(text, "]") {
				return errorf(file, n, "section header %q has no closing ]", text)
			}
			name := strings.Trim(text[1:len(text)-1], " \t")
			if name == "" {
				return errorf(file, n, "empty section name")
			}
			i, ok := index[name]
			if !ok {
				return errorf(file, n, "unknown list %q (lists: %s)", name, strings.Join(Names(), ", "))
			}
			cur = i
			continue
		case cur < 0:
			return errorf(file, n, "entry %q before the first [list] section", text)
		case strings.ContainsAny(text, " \t"):
			return errorf(file, n, "%s: %q: one entry per line", catalog[cur].name, text)
		}
		if err := s.lists[cur].add(catalog[cur].kind, text); err != nil {
			return errorf(file, n, "%s: %w", catalog[cur].name, err)
		}
	}
	return nil
}

// add checks entry against the rules for kind k and adds its canonical form.
func (l *list) add(k kind, entry string) error {
	switch k {
	case kindDomain:
		d, err := parseDomain(entry)
		if err != nil {
			return err
		}
		l.strs[d] = struct{}{}
	case kindName:
		n, err := parseName(entry)
		if err != nil {
			return err
		}
		l.strs[n] = struct{}{}
	case kindPort:
		p, err := parsePort(entry)
		if err != nil {
			return err
		}
		l.ports[p] = struct{}{}
	case kindIP:
		p, err := parseNet(entry)
		if err != nil {
			return err
		}
		l.addPrefix(p)
	}
	return nil
}

// parseDomain returns entry in lower case without a trailing dot, or an
// error unless it is a host name of at least two labels whose last label is
// not numeric (which rules out IPv4 literals, so they never match a domain
// list).
func parseDomain(entry string) (string, error) {
	if _, err := netip.ParseAddr(entry); err == nil {
		return "", fmt.Errorf("%q is an IP address; list it under [malicious-ips]", entry)
	}
	if strings.HasPrefix(entry, "*.") {
		return "", fmt.Errorf("%q: drop the \"*.\"; an entry already matches every subdomain", entry)
	}
	if strings.Contains(entry, "://") {
		return "", fmt.Errorf("%q: write the host name alone, without a scheme or path", entry)
	}
	for i := 0; i < len(entry); i++ {
		if !hostByte[entry[i]] {
			return "", fmt.Errorf("%q: byte %q is not allowed in a host name (want letters, digits, '-', '_' and '.')", entry, entry[i:i+1])
		}
	}
	d := strings.ToLower(strings.TrimSuffix(entry, "."))
	if len(d) > maxDomain {
		return "", fmt.Errorf("%q: longer than %d bytes", entry, maxDomain)
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return "", fmt.Errorf("%q: a domain needs at least two labels", entry)
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "", fmt.Errorf("%q: labels must be 1 to 63 bytes", entry)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "", fmt.Errorf("%q: a label cannot start or end with '-'", entry)
		}
	}
	if numericTLD(d) {
		return "", fmt.Errorf("%q: the last label is numeric", entry)
	}
	return d, nil
}

// parseName returns entry in lower case, or an error unless it is a plausible
// executable base name.
func parseName(entry string) (string, error) {
	if len(entry) > maxName {
		return "", fmt.Errorf("%q: longer than %d bytes", entry, maxName)
	}
	if entry == "." || entry == ".." {
		return "", fmt.Errorf("%q is not an executable name", entry)
	}
	for i := 0; i < len(entry); i++ {
		switch c := entry[i]; {
		case c == '/':
			return "", fmt.Errorf("%q: give the executable's base name, without a directory", entry)
		case c <= ' ' || c >= 0x7f:
			return "", fmt.Errorf("%q: names are printable ASCII", entry)
		}
	}
	return strings.ToLower(entry), nil
}

// parsePort returns entry as a port, or an error unless it is a decimal
// number from 1 to 65535.
func parsePort(entry string) (uint16, error) {
	if len(entry) > 5 {
		return 0, fmt.Errorf("%q is not a port (1-65535)", entry)
	}
	n := 0
	for i := 0; i < len(entry); i++ {
		c := entry[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a port (1-65535)", entry)
		}
		n = n*10 + int(c-'0')
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port (1-65535)", entry)
	}
	return uint16(n), nil
}

// parseNet returns entry, an address or a CIDR prefix, as a prefix (an
// address becomes a /32 or /128). Zones, IPv4-mapped IPv6 and prefixes with
// host bits set are errors, the last because such a typo silently widens
// or narrows the list.
func parseNet(entry string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(entry, "/") {
		var err error
		if p, err = netip.ParsePrefix(entry); err != nil {
			return p, err
		}
		if p != p.Masked() {
			return p, fmt.Errorf("%q has host bits set; the prefix is %s", entry, p.Masked())
		}
	} else {
		a, err := netip.ParseAddr(entry)
		if err != nil {
			return p, err
		}
		if a.Zone() != "" {
			return p, fmt.Errorf("%q: zones are not allowed", entry)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() {
		return p, fmt.Errorf("%q: write IPv4-mapped addresses as IPv4", entry)
	}
	return p, nil
}
