package export

import (
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// cefLine is a in ArcSight's Common Event Format:
//
//	CEF:0|Vigil|Vigil|<version>|<rule>|<title>|<severity 0-10>|<extension>
//
// The extension carries, when set: rt and start (last and first seen, ms
// since the epoch), cnt, externalId (the alert id), cat (tactic), act
// (action), dvchost (node), suser, suid, spid, sproc (executable),
// cs1=namespace, cs2=pod, cs3=cluster, cs4=container, cs5=image,
// cs6=workload (each with its csNLabel), flexString1=techniques,
// flexString2=command line, and msg (the description).
func cefLine(a event.Alert) string {
	var b strings.Builder
	b.WriteString("CEF:0|Vigil|Vigil|")
	for _, f := range []string{version, a.Rule, a.Title} {
		b.WriteString(cefHeader.Replace(f))
		b.WriteByte('|')
	}
	b.WriteString(strconv.Itoa(cefSeverity(a.Severity)))
	b.WriteByte('|')

	first := true
	ext := func(k, v string) {
		if v == "" {
			return
		}
		if !first {
			b.WriteByte(' ')
		}
		first = false
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(cefValue.Replace(v))
	}
	ext("rt", epochMilli(a.LastSeen))
	ext("start", epochMilli(a.FirstSeen))
	if a.Count > 0 {
		ext("cnt", strconv.FormatUint(a.Count, 10))
	}
	ext("externalId", a.ID)
	ext("cat", a.Tactic)
	ext("act", a.Action)
	ext("dvchost", a.Node)
	if a.User != nil {
		ext("suser", a.User.Name)
	}
	if p := a.Process; p != nil {
		ext("suid", strconv.FormatUint(uint64(p.UID), 10))
		ext("spid", strconv.FormatUint(uint64(p.Pid), 10))
		ext("sproc", p.Exe)
	}
	for i, cs := range [][2]string{
		{"namespace", a.Namespace}, {"pod", a.Pod}, {"cluster", a.Cluster},
		{"container", a.Container}, {"image", a.Image}, {"workload", a.Workload},
	} {
		if cs[1] != "" {
			n := strconv.Itoa(i + 1)
			ext("cs"+n+"Label", cs[0])
			ext("cs"+n, cs[1])
		}
	}
	if len(a.Techniques) > 0 {
		ext("flexString1Label", "techniques")
		ext("flexString1", strings.Join(a.Techniques, ","))
	}
	if a.Process != nil && len(a.Process.Args) > 0 {
		ext("flexString2Label", "cmdline")
		ext("flexString2", strings.Join(a.Process.Args, " "))
	}
	ext("msg", a.Description)
	return b.String()
}

// epochMilli is t in ms since the epoch, "" for the zero time.
func epochMilli(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

// cefSeverity maps onto CEF's 0-10 scale: low 0-3, medium 4-6, high 7-8.
func cefSeverity(s event.Severity) int {
	switch s {
	case event.High:
		return 8
	case event.Medium:
		return 5
	case event.Low:
		return 3
	}
	return 1
}

// Header fields escape the pipe and backslash; extension values escape the
// backslash and equals sign and spell line breaks as \n and \r. Neither may
// hold a raw line break: it would end the record.
var (
	cefHeader = strings.NewReplacer(`\`, `\\`, `|`, `\|`, "\r\n", " ", "\n", " ", "\r", " ")
	cefValue  = strings.NewReplacer(`\`, `\\`, `=`, `\=`, "\r\n", `\n`, "\n", `\n`, "\r", `\r`)
)
