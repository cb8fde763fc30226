package detect

import (
	"sync"

	"github.com/vigil-sec/vigil/internal/intel"
)

// Intel answers the rule language's ti_* functions. *intel.Set is the
// implementation; tests may pass their own.
type Intel interface {
	MinerBinary(name string) bool
	AttackTool(name string) bool
	Scanner(name string) bool
	CredentialTool(name string) bool
	DDoSTool(name string) bool
	Proxyware(name string) bool
	MinerPool(host string) bool
	MinerPort(port int) bool
	OASTDomain(host string) bool
	MaliciousDomain(host string) bool
	MaliciousIP(ip string) bool
	// FindDomain and FindIP scan free text, such as a command line.
	FindDomain(list, text string) (string, bool)
	FindIP(text string) (string, bool)
}

func defaultIntel() Intel { return intel.Default() }

// textScanner is what *intel.Set offers beyond Intel: the answers of every
// free-text scan (FindDomain on each domain list, FindIP) in one pass.
type textScanner interface {
	ScanText(text string) intel.Found
}

// intelFuncs are the string -> bool threat-intelligence functions, by CEL name.
func intelFuncs(in Intel) map[string]func(string) bool {
	tc := textCacheOf(in)
	return map[string]func(string) bool{
		"ti_miner_binary":     in.MinerBinary,
		"ti_attack_tool":      in.AttackTool,
		"ti_scanner":          in.Scanner,
		"ti_credential_tool":  in.CredentialTool,
		"ti_ddos_tool":        in.DDoSTool,
		"ti_proxyware":        in.Proxyware,
		"ti_miner_pool":       in.MinerPool,
		"ti_oast_domain":      in.OASTDomain,
		"ti_malicious_domain": in.MaliciousDomain,
		"ti_malicious_ip":     in.MaliciousIP,
		// Free-text scans, for command lines. The four ask about the same
		// command line of an event, one after the other (the rule index
		// calls each once per exec event, conditions again): one scan
		// answers them all.
		"ti_miner_pool_in":       func(s string) bool { return tc.scan(s)&intel.FoundMinerPool != 0 },
		"ti_oast_domain_in":      func(s string) bool { return tc.scan(s)&intel.FoundOASTDomain != 0 },
		"ti_malicious_domain_in": func(s string) bool { return tc.scan(s)&intel.FoundMaliciousDomain != 0 },
		"ti_malicious_ip_in":     func(s string) bool { return tc.scan(s)&intel.FoundMaliciousIP != 0 },
	}
}

// cachedIntel is an Intel whose free-text scans share a textCache. The
// compiler wraps its Intel in one, so that all the ti_*_in functions of a
// ruleset (in CEL programs and in the native index) share one cache.
type cachedIntel struct {
	Intel
	cache *textCache
}

func withTextCache(in Intel) Intel {
	if in == nil {
		return nil
	}
	if _, ok := in.(*cachedIntel); ok {
		return in
	}
	return &cachedIntel{Intel: in, cache: &textCache{in: in}}
}

func textCacheOf(in Intel) *textCache {
	if c, ok := in.(*cachedIntel); ok {
		return c.cache
	}
	return &textCache{in: in}
}

// maxCachedText bounds the text a textCache keeps a copy of; longer texts
// (argv can reach megabytes) are scanned every time.
const maxCachedText = 64 << 10

// textCache remembers the scan of the last text it was asked about. It
// belongs to a ruleset, which engines on several goroutines may share: an
// engine that finds it busy scans without it rather than wait. The text is
// compared by content (a copy is kept), so a caller's reused buffer cannot
// be mistaken for the text it held before.
type textCache struct {
	in Intel

	mu    sync.Mutex
	text  []byte
	valid bool
	found intel.Found
}

func (c *textCache) scan(s string) intel.Found {
	if len(s) > maxCachedText || !c.mu.TryLock() {
		return scanText(c.in, s)
	}
	if !c.valid || string(c.text) != s {
		c.found = scanText(c.in, s)
		c.text = append(c.text[:0], s...)
		c.valid = true
	}
	found := c.found
	c.mu.Unlock()
	return found
}

// scanText answers all free-text scans of s, in one pass when in can.
func scanText(in Intel, s string) intel.Found {
	if ts, ok := in.(textScanner); ok {
		return ts.ScanText(s)
	}
	var found intel.Found
	for _, l := range [...]struct {
		name string
		bit  intel.Found
	}{
		{"miner-pools", intel.FoundMinerPool},
		{"oast-domains", intel.FoundOASTDomain},
		{"malicious-domains", intel.FoundMaliciousDomain},
	} {
		if _, ok := in.FindDomain(l.name, s); ok {
			found |= l.bit
		}
	}
	if _, ok := in.FindIP(s); ok {
		found |= intel.FoundMaliciousIP
	}
	return found
}
