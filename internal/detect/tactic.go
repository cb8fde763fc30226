package detect

import "strings"

// tactics are the 14 tactics of the MITRE ATT&CK enterprise matrix, in
// kill-chain order, with their ids.
var tactics = []struct{ id, name string }{
	{"TA0043", "Reconnaissance"},
	{"TA0042", "Resource Development"},
	{"TA0001", "Initial Access"},
	{"TA0002", "Execution"},
	{"TA0003", "Persistence"},
	{"TA0004", "Privilege Escalation"},
	{"TA0005", "Defense Evasion"},
	{"TA0006", "Credential Access"},
	{"TA0007", "Discovery"},
	{"TA0008", "Lateral Movement"},
	{"TA0009", "Collection"},
	{"TA0011", "Command and Control"},
	{"TA0010", "Exfiltration"},
	{"TA0040", "Impact"},
}

// canonicalTactic maps a tactic name (any case, spaces or hyphens:
// "privilege-escalation") or id ("TA0004") to its ATT&CK name, so alerts
// carry one spelling whatever the rule file wrote.
func canonicalTactic(s string) (string, bool) {
	k := strings.Join(strings.Fields(strings.ReplaceAll(strings.TrimSpace(s), "-", " ")), " ")
	for _, t := range tactics {
		if strings.EqualFold(k, t.name) || strings.EqualFold(k, t.id) {
			return t.name, true
		}
	}
	return "", false
}

// tacticNames lists the tactic names for error messages.
func tacticNames() string {
	names := make([]string, len(tactics))
	for i, t := range tactics {
		names[i] = t.name
	}
	return strings.Join(names, ", ")
}
