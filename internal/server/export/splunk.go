package export

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/vigil-sec/vigil/internal/event"
)

// splunk sends a batch to Splunk's HTTP Event Collector: one JSON event
// object per alert, concatenated, authenticated with "Splunk <token>".
type splunk struct {
	name     string
	target   *httpTarget
	endpoint string
	index    string
	auth     map[string]string
}

const splunkSourcetype = "vigil:alert"

func newSplunk(c Config) (Output, error) {
	t, err := newHTTPTarget(c, c.URL, false)
	if err != nil {
		return nil, err
	}
	if c.Secret == "" {
		return nil, errors.New("secret: the HEC token is missing")
	}
	s := &splunk{name: c.Name, target: t, index: c.Index,
		auth: map[string]string{"Authorization": "Splunk " + c.Secret}}
	s.endpoint = t.url.String()
	if t.url.Path == "" || t.url.Path == "/" {
		s.endpoint = t.endpoint("/services/collector/event")
	}
	return s, nil
}

func (s *splunk) Name() string { return s.name }

func (s *splunk) Send(ctx context.Context, alerts []event.Alert) error {
	body, err := splunkPayload(alerts, s.index)
	if err != nil {
		return permanent(err)
	}
	_, err = s.target.post(ctx, s.endpoint, "application/json", body, s.auth)
	return err
}

type hecEvent struct {
	Time       json.Number  `json:"time,omitempty"`
	Host       string       `json:"host,omitempty"`
	Source     string       `json:"source"`
	Sourcetype string       `json:"sourcetype"`
	Index      string       `json:"index,omitempty"`
	Event      *event.Alert `json:"event"`
}

// splunkPayload is the HEC body: for each alert an event object whose time
// is the alert's last_seen (seconds since the epoch, ms precision), host its
// node and event the alert, one per line.
func splunkPayload(alerts []event.Alert, index string) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	for i := range alerts {
		a := &alerts[i]
		e := hecEvent{Host: a.Node, Source: "vigil", Sourcetype: splunkSourcetype, Index: index, Event: a}
		if !a.LastSeen.IsZero() {
			e.Time = json.Number(strconv.FormatFloat(float64(a.LastSeen.UnixMilli())/1000, 'f', 3, 64))
		}
		if err := enc.Encode(e); err != nil {
			return nil, fmt.Errorf("encode alert %s: %w", a.ID, err)
		}
	}
	return b.Bytes(), nil
}
