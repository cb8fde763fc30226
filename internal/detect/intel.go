package detect

import "github.com/vigil-sec/vigil/internal/intel"

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
