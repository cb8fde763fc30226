// Package intel is Vigil's offline threat intelligence: lists of mining
// pools, miner ports, offensive tools, out-of-band testing services and
// known-malicious domains and addresses that detection rules match events
// against. The detection engine calls it from its rule functions (ti_*) on
// every matching event, so lookups are plain Go calls that do not allocate.
//
// # Where the data comes from
//
// The lists are curated by hand from public knowledge (tools' own release
// names, mining pools' published connection details, services'
// documentation and public incident reports) and live in data/, one file
// per list, compiled into the binary with go:embed. Nothing is downloaded at
// run time: Vigil runs in clusters without Internet access, and a detection
// should not depend on a feed being reachable. The malicious-domains and
// malicious-ips lists are deliberately small, since such indicators go stale
// within months; they exist so that the rules work out of the box and so
// that users have somewhere to put their own.
//
// # Updating it
//
// Users add entries with an update file, given as --intel FILE (repeatable);
// Default().WithFile(path) builds the resulting Set. The format is the data
// files' format with sections:
//
//	# Our feed, exported 2025-01-31.
//	[miner-pools]
//	pool.example-mining.net
//
//	[malicious-ips]
//	203.0.113.7          # a single address
//	2001:db8:bad::/48    # a CIDR prefix
//
//	[attack-tools]
//	our-red-team-tool
//
// A section header names one of the lists (see Names); entries follow, one
// per line. '#' starts a comment; blank lines and surrounding spaces are
// ignored. Entries only add: the file cannot remove a shipped entry (use a
// rule exception for a false positive). Unknown lists, malformed entries,
// lines longer than MaxLineLength, control bytes and files larger than
// MaxFileSize are rejected with a ParseError naming file and line.
//
// # Matching
//
// Domain lists (miner-pools, oast-domains, malicious-domains) match a host
// equal to an entry or under it: supportxmr.com matches pool.supportxmr.com,
// not supportxmr.com.example.net. Case and a trailing dot are ignored and IP
// literals never match. Executable-name lists (miner-binaries, attack-tools,
// scanners, credential-tools, ddos-tools, proxyware) match a base name,
// ignoring case. malicious-ips matches an address equal to an entry or
// inside an entry's prefix. FindDomain and FindIP look for the same things in
// free text such as a command line; ScanText answers all of them at once.
package intel
