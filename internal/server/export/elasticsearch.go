package export

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// elasticsearch indexes a batch with one _bulk request. Each alert is a
// document whose _id is the alert id, so a re-sent batch or an aggregated
// alert's update overwrites instead of duplicating. The response's
// per-item errors decide: any item refused for load (429, 5xx) retries the
// batch; items refused for their content (4xx) make a permanent error.
type elasticsearch struct {
	name     string
	target   *httpTarget
	endpoint string
	index    string
	auth     map[string]string
}

const defaultIndex = "vigil-alerts"

func newElasticsearch(c Config) (Output, error) {
	t, err := newHTTPTarget(c, c.URL, false)
	if err != nil {
		return nil, err
	}
	e := &elasticsearch{name: c.Name, target: t, index: c.Index, endpoint: t.endpoint("/_bulk")}
	if e.index == "" {
		e.index = defaultIndex
	}
	// An API key (id:key already base64-encoded, as Elasticsearch returns
	// it) has no colon; user:password is basic authentication.
	switch {
	case c.Secret == "":
	case strings.Contains(c.Secret, ":"):
		e.auth = map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(c.Secret))}
	default:
		e.auth = map[string]string{"Authorization": "ApiKey " + c.Secret}
	}
	return e, nil
}

func (e *elasticsearch) Name() string { return e.name }

func (e *elasticsearch) Send(ctx context.Context, alerts []event.Alert) error {
	body, err := bulkPayload(alerts, e.index)
	if err != nil {
		return permanent(err)
	}
	resp, err := e.target.post(ctx, e.endpoint, "application/x-ndjson", body, e.auth)
	if err != nil {
		return err
	}
	return bulkErrors(resp, len(alerts))
}

// esDoc is an alert with the @timestamp that Kibana and data views expect.
type esDoc struct {
	Timestamp time.Time `json:"@timestamp,omitzero"`
	*event.Alert
}

// bulkPayload is the _bulk NDJSON body: an index action naming the index
// and the alert id, then the document, for each alert.
func bulkPayload(alerts []event.Alert, index string) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	type meta struct {
		Index string `json:"_index"`
		ID    string `json:"_id,omitempty"`
	}
	for i := range alerts {
		a := &alerts[i]
		if err := enc.Encode(map[string]meta{"index": {Index: index, ID: a.ID}}); err != nil {
			return nil, err
		}
		if err := enc.Encode(esDoc{Timestamp: a.LastSeen.UTC(), Alert: a}); err != nil {
			return nil, fmt.Errorf("encode alert %s: %w", a.ID, err)
		}
	}
	return b.Bytes(), nil
}

// bulkErrors reads a _bulk response: nil when every item succeeded, a
// retryable error when any item was refused for load, else a permanent one
// naming the first refusal.
func bulkErrors(body []byte, n int) error {
	var r struct {
		Errors bool `json:"errors"`
		Items  []map[string]struct {
			Status int `json:"status"`
			Error  struct {
				Type   string `json:"type"`
				Reason string `json:"reason"`
			} `json:"error"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("bulk response: %w", err)
	}
	if !r.Errors {
		return nil
	}
	var retry, reject int
	var first string
	for _, item := range r.Items {
		for _, res := range item {
			switch {
			case res.Status < 300:
				continue
			case res.Status == 429 || res.Status >= 500:
				retry++
			default:
				reject++
			}
			if first == "" {
				first = fmt.Sprintf("status %d %s: %s", res.Status, res.Error.Type, snippet([]byte(res.Error.Reason), 200))
			}
		}
	}
	if retry > 0 {
		return fmt.Errorf("bulk: %d of %d documents refused for now, first %s", retry+reject, n, first)
	}
	return fmt.Errorf("%w: %w: bulk: %d of %d documents rejected, first %s", ErrPermanent, errPayload, reject, n, first)
}
