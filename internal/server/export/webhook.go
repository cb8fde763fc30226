package export

import (
	"context"

	"github.com/vigil-sec/vigil/internal/event"
)

// webhook POSTs each batch as a JSON array of alerts (DESIGN.md's alert
// shape) with the configured headers, and the Secret as a bearer token.
type webhook struct {
	name   string
	target *httpTarget
	auth   map[string]string
}

func newWebhook(c Config) (Output, error) {
	t, err := newHTTPTarget(c, c.URL, false)
	if err != nil {
		return nil, err
	}
	w := &webhook{name: c.Name, target: t}
	if c.Secret != "" {
		w.auth = map[string]string{"Authorization": "Bearer " + c.Secret}
	}
	return w, nil
}

func (w *webhook) Name() string { return w.name }

func (w *webhook) Send(ctx context.Context, alerts []event.Alert) error {
	body, err := webhookPayload(alerts)
	if err != nil {
		return permanent(err)
	}
	_, err = w.target.post(ctx, w.target.url.String(), "application/json", body, w.auth)
	return err
}

// webhookPayload is the body of a webhook POST: the alerts as a JSON array.
func webhookPayload(alerts []event.Alert) ([]byte, error) {
	if alerts == nil {
		alerts = []event.Alert{}
	}
	return marshal(alerts)
}
