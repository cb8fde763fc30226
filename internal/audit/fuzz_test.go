package audit

import (
	"bytes"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
)

// checkEvent fails unless a is a usable event, and runs what rules run on it.
func checkEvent(t *testing.T, a *event.Audit) {
	t.Helper()
	if a.AuditID == "" || a.Verb == "" || a.Stage == "" || a.User.Username == "" {
		t.Fatalf("event without a required field: %+v", a)
	}
	ObjectOf(a)
	ExecCommand(a)
	ExecContainer(a)
	if e := Event(a); e.Audit != a || e.Kind != event.K8sAudit {
		t.Fatalf("Event: %+v", e)
	}
}

func FuzzDecodeBatch(f *testing.F) {
	pod := `"requestObject":{"kind":"Pod","spec":{"hostPID":true,"securityContext":{"runAsUser":0},"volumes":[{"hostPath":{"path":"/"}}],` +
		`"containers":[{"name":"c","securityContext":{"privileged":true,"capabilities":{"add":["cap_sys_admin"]}},"ports":[{"hostPort":1}]}]}}`
	f.Add([]byte(eventList(ev("1", "create", "alice", pod), `{"auditID":1}`, `{"auditID":"2"}`)))
	f.Add([]byte(ev("1", "patch", "alice", `"requestObject":{"spec":{}}`, `"responseObject":{"kind":"ClusterRoleBinding","roleRef":{"kind":"ClusterRole","name":"cluster-admin"},"subjects":[{"kind":"ServiceAccount","name":"a","namespace":"b"}]}`)))
	f.Add([]byte("[" + ev("1", "create", "u", `"requestURI":"/api/v1/namespaces/a/pods/b/exec?command=sh&command=-c&container=x%2"`) + "," +
		ev("2", "create", "u", `"requestObject":{"kind":"Service","spec":{"type":"NodePort","ports":[{"port":1,"nodePort":2}]}}`) + "]"))
	f.Add([]byte(`[{"auditID":"a","verb":"v","stage":"s","user":{"username":"u"},"requestObject":{"kind":"CronJob","spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{}]}}}}}},"objectRef":{"subresource":"x"},"responseObject":[1]}]`))
	f.Add([]byte(`{"kind":"Pod"}`))
	f.Add([]byte(`{"items":null}`))
	f.Add([]byte(`null`))
	f.Add([]byte("\x00garbage{[\"\\u"))
	f.Fuzz(func(t *testing.T, body []byte) {
		events, st, err := DecodeBatch(body)
		if err != nil {
			if events != nil || st != (Stats{}) {
				t.Fatalf("events %d, stats %+v with error %v", len(events), st, err)
			}
			return
		}
		if st.Events != len(events) || st.TooLong != 0 || st.Truncated > st.Events {
			t.Fatalf("stats %+v for %d events", st, len(events))
		}
		for i := range events {
			a := &events[i]
			checkEvent(t, a)
			if a.Annotations[TruncatedAnnotation] != "" && (a.RequestObject != nil || a.ResponseObject != nil) {
				t.Fatalf("truncated event with objects")
			}
		}
	})
}

func FuzzReadLines(f *testing.F) {
	f.Add([]byte(ev("1", "get", "u")+"\n"+ev("2", "get", "u")+"\r\n\n  \n"+ev("3", "get", "u")[:20]), false)
	f.Add([]byte(ev("1", "get", "u")+"\n"+`{"auditID":7}`+"\n"+`{}`+"\n"), true)
	f.Add([]byte("\n\n\n"), true)
	f.Add([]byte("garbage"), true)
	f.Add([]byte(strings.Repeat("x", 70<<10)+"\n"+ev("1", "get", "u")), true)
	f.Fuzz(func(t *testing.T, input []byte, final bool) {
		var calls int
		st, off, err := ReadLines(bytes.NewReader(input), final, func(a *event.Audit) error {
			calls++
			checkEvent(t, a)
			return nil
		})
		if err != nil {
			t.Fatalf("error reading from memory: %v", err)
		}
		if off < 0 || off > int64(len(input)) {
			t.Fatalf("offset %d of %d bytes", off, len(input))
		}
		if st.Events != calls {
			t.Fatalf("stats %+v, %d calls", st, calls)
		}
		ends := len(input) == 0 || input[len(input)-1] == '\n'
		switch {
		case final && off != int64(len(input)):
			t.Fatalf("final: offset %d of %d bytes", off, len(input))
		case ends && off != int64(len(input)):
			t.Fatalf("input ends in a newline, offset %d of %d bytes", off, len(input))
		case !final && !ends && off != int64(bytes.LastIndexByte(input, '\n')+1):
			t.Fatalf("not final: offset %d, last newline at %d", off, bytes.LastIndexByte(input, '\n'))
		}
		// What was consumed reads the same again, and the rest adds up.
		if !final {
			st2, off2, err := ReadLines(bytes.NewReader(input[:off]), true, func(*event.Audit) error { return nil })
			if err != nil || st2 != st || off2 != off {
				t.Fatalf("prefix: %+v %d %v, whole: %+v %d", st2, off2, err, st, off)
			}
		}
		// Lines are independent: a line's events do not depend on the lines around it.
		if final {
			var want Stats
			for _, line := range bytes.SplitAfter(input, []byte("\n")) {
				if len(line) == 0 {
					continue
				}
				s, _, _ := ReadLines(bytes.NewReader(line), true, func(*event.Audit) error { return nil })
				want.Add(s)
			}
			if want != st {
				t.Fatalf("line by line %+v, whole %+v", want, st)
			}
		}
	})
}
