package export

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// slack posts one incoming-webhook message per batch: a plain-text summary
// (for notifications) and Block Kit sections per alert with its severity,
// resource and process. The webhook URL is the credential.
type slack struct {
	name   string
	target *httpTarget
}

// slackMaxAlerts keeps a message under Slack's 50 blocks (4 per alert).
const slackMaxAlerts = 10

func newSlack(c Config) (Output, error) {
	t, err := newHTTPTarget(c, c.URL, true)
	if err != nil {
		return nil, err
	}
	return &slack{name: c.Name, target: t}, nil
}

func (s *slack) Name() string { return s.name }

func (s *slack) Send(ctx context.Context, alerts []event.Alert) error {
	for len(alerts) > 0 {
		n := min(len(alerts), slackMaxAlerts)
		body, err := slackPayload(alerts[:n])
		if err != nil {
			return permanent(err)
		}
		if _, err := s.target.post(ctx, s.target.url.String(), "application/json", body, nil); err != nil {
			return err
		}
		alerts = alerts[n:]
	}
	return nil
}

type slackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Fields   []slackText `json:"fields,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// slackPayload is the incoming-webhook body for a batch of at most
// slackMaxAlerts alerts.
func slackPayload(alerts []event.Alert) ([]byte, error) {
	m := slackMessage{Blocks: []slackBlock{}}
	if len(alerts) > 0 {
		m.Text = slackSummary(alerts[0])
		if len(alerts) > 1 {
			m.Text = fmt.Sprintf("%d Vigil alerts: %s and %d more", len(alerts), m.Text, len(alerts)-1)
		}
	}
	for i, a := range alerts {
		if i > 0 {
			m.Blocks = append(m.Blocks, slackBlock{Type: "divider"})
		}
		title := fmt.Sprintf("%s *%s* %s\n`%s`", slackEmoji(a.Severity), strings.ToUpper(string(a.Severity)),
			mrkdwn(a.Title), codeSpan(a.Rule))
		m.Blocks = append(m.Blocks, slackBlock{Type: "section", Text: mrkdwnText(title, 3000)})

		var fields []slackText
		field := func(label, value string) {
			if value != "" {
				fields = append(fields, *mrkdwnText("*"+label+"*\n"+value, 2000))
			}
		}
		field("Resource", mrkdwn(resource(a)))
		field("Cluster", mrkdwn(a.Cluster))
		field("Node", mrkdwn(a.Node))
		field("Image", mrkdwn(a.Image))
		if a.Process != nil {
			cmd := a.Process.Exe
			if len(a.Process.Args) > 0 {
				cmd = strings.Join(a.Process.Args, " ")
			}
			field("Process", "`"+codeSpan(truncateUTF8(cmd, 1000))+"`")
		}
		if a.User != nil {
			field("User", mrkdwn(a.User.Name))
		}
		if !a.LastSeen.IsZero() {
			field("Last seen", fmt.Sprintf("%s (%d×)", a.LastSeen.UTC().Format(time.RFC3339), a.Count))
		}
		if len(fields) > 0 {
			m.Blocks = append(m.Blocks, slackBlock{Type: "section", Fields: fields})
		}

		ctx := []string{"id " + a.ID}
		if a.Tactic != "" {
			ctx = append(ctx, a.Tactic)
		}
		ctx = append(ctx, a.Techniques...)
		m.Blocks = append(m.Blocks, slackBlock{Type: "context", Elements: []slackText{*mrkdwnText(mrkdwn(strings.Join(ctx, " · ")), 2000)}})
	}
	return marshal(m)
}

// slackSummary is the one-line notification text for a.
func slackSummary(a event.Alert) string {
	s := fmt.Sprintf("[%s] %s", strings.ToUpper(string(a.Severity)), a.Title)
	if r := resource(a); r != "" {
		s += " (" + r + ")"
	}
	if a.Cluster != "" {
		s += " in " + a.Cluster
	}
	return truncateUTF8(s, 3000)
}

// resource names what an alert is about, most specific first.
func resource(a event.Alert) string {
	switch {
	case a.Pod != "":
		r := a.Namespace + "/" + a.Pod
		if a.Container != "" {
			r += " container " + a.Container
		}
		return r
	case a.Workload != "":
		return a.Workload
	case a.Namespace != "":
		return "namespace " + a.Namespace
	case a.Node != "":
		return "node " + a.Node
	}
	return ""
}

func slackEmoji(s event.Severity) string {
	switch s {
	case event.High:
		return ":red_circle:"
	case event.Medium:
		return ":large_orange_circle:"
	case event.Low:
		return ":large_yellow_circle:"
	}
	return ":white_circle:"
}

func mrkdwnText(s string, n int) *slackText {
	return &slackText{Type: "mrkdwn", Text: truncateUTF8(s, n)}
}

// mrkdwn escapes the three characters Slack's markup reserves.
var mrkdwn = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace

// codeSpan makes s safe inside `...`.
func codeSpan(s string) string {
	return mrkdwn(strings.ReplaceAll(s, "`", "'"))
}
