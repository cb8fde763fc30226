package intel

import "testing"

func BenchmarkMinerPool(b *testing.B) {
	s := Default()
	for _, host := range []string{"xmr-eu1.nanopool.org", "XMR-EU1.NanoPool.ORG.", "metadata.google.internal", "a.b.c.d.e.f.api.github.com"} {
		b.Run(host, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.MinerPool(host)
			}
		})
	}
}

func BenchmarkMaliciousIP(b *testing.B) {
	s := testSet(b)
	for _, ip := range []string{"10.96.0.1", "195.3.146.118", "2001:db8:bad::1", "::ffff:10.0.0.1"} {
		b.Run(ip, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.MaliciousIP(ip)
			}
		})
	}
}

func BenchmarkTool(b *testing.B) {
	s := Default()
	for _, name := range []string{"xmrig", "XMRig", "/usr/local/bin/python3.12"} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.MinerBinary(name)
			}
		})
	}
}

// benchTexts are command lines the scanning benchmarks read: a miner's,
// a long benign one and a download.
var benchTexts = map[string]string{
	"miner":  "/tmp/.x/xmrig -o stratum+tcp://gulf.moneroocean.stream:10128 -u 44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A -p x --donate-level 1",
	"benign": "/usr/bin/java -Xmx2g -Dspring.profiles.active=prod -Djava.security.egd=file:/dev/./urandom -jar /app/service.jar --server.port=8080 --spring.datasource.url=jdbc:postgresql://db.prod.svc.cluster.local:5432/orders",
	"curl":   "curl -fsSL https://raw.githubusercontent.com/helm/helm/main/scripts/get-helm-3",
}

func BenchmarkFindDomain(b *testing.B) {
	s := Default()
	for name, text := range benchTexts {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.FindDomain("miner-pools", text)
			}
		})
	}
}

func BenchmarkFindIP(b *testing.B) {
	s := Default()
	text := "curl -fsSL http://10.0.12.7:8080/healthz --retry 3 --connect-timeout 1.5 -H 'X-Request-Time: 12:30:00'"
	b.ReportAllocs()
	for b.Loop() {
		s.FindIP(text)
	}
}
