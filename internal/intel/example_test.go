package intel_test

import (
	"fmt"
	"strings"

	"github.com/vigil-sec/vigil/internal/intel"
)

func ExampleSet_FindDomain() {
	ti := intel.Default()
	host, ok := ti.FindDomain("miner-pools", "./xmrig -o stratum+tcp://Gulf.MoneroOcean.stream:10128 -u 44AF...")
	fmt.Println(host, ok)
	// Output: Gulf.MoneroOcean.stream true
}

func ExampleLoad() {
	ti, err := intel.Load(strings.NewReader(`
# Our own indicators, added to the shipped ones.
[malicious-ips]
203.0.113.0/24
[attack-tools]
our-red-team-tool
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ti.MaliciousIP("203.0.113.50"), ti.AttackTool("/tmp/our-red-team-tool"), ti.MinerPool("pool.supportxmr.com"))
	// Output: true true true
}
