package ship

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// PostureConfigPath is where a cluster credential reads its cluster's
// effective posture configuration.
const PostureConfigPath = "/api/v1/posture/config"

// ErrNotModified: the server's posture configuration is still the one of
// the ETag the caller passed.
var ErrNotModified = errors.New("not modified")

// maxPostureAnswer bounds the server's answer: the document (at most
// 1 MiB) and its parsed form.
const maxPostureAnswer = 8 << 20

// FetchPostureConfig reads the effective posture configuration of the
// client's cluster (its own document, else the fleet default, else Vigil's
// built-in defaults) with the client's credential, proxy and TLS settings.
// etag is what the previous call returned ("" the first time): when the
// configuration has not changed since, it returns ErrNotModified and etag,
// and the server sends no body, so polling is cheap.
//
// doc is the document as the admin stored it (YAML or JSON), empty when
// the built-in defaults apply; the caller turns it into a posture.Config
// with posture.ParseConfig, which gives the defaults for an empty doc
// (ship cannot import posture: posture imports ship). Errors never contain
// the token.
func (c *Client) FetchPostureConfig(ctx context.Context, etag string) (doc []byte, newETag string, err error) {
	base := strings.TrimSuffix(c.endpoint, IngestPath)
	rctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, base+PostureConfigPath, nil)
	if err != nil {
		return nil, "", fmt.Errorf("fetch posture config: %s", c.redact(err.Error()))
	}
	req.Header.Set("User-Agent", "vigil-ship")
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	req.Header.Set("Accept", "application/json")
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("fetch posture config: %s", c.redact(err.Error()))
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified {
		return nil, etag, ErrNotModified
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPostureAnswer+1))
	if err != nil {
		return nil, "", fmt.Errorf("fetch posture config: %s", c.redact(err.Error()))
	}
	if resp.StatusCode/100 != 2 {
		return nil, "", fmt.Errorf("fetch posture config: %s%s", resp.Status, c.redact(serverMessage(body)))
	}
	if len(body) > maxPostureAnswer {
		return nil, "", fmt.Errorf("fetch posture config: answer larger than %d bytes", maxPostureAnswer)
	}
	var a struct {
		Source   string  `json:"source"`
		Document *string `json:"document"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, "", fmt.Errorf("fetch posture config: bad answer: %w", err)
	}
	switch {
	case a.Source == "builtin":
		return nil, resp.Header.Get("ETag"), nil
	case (a.Source == "cluster" || a.Source == "fleet") && a.Document != nil:
		return []byte(*a.Document), resp.Header.Get("ETag"), nil
	}
	return nil, "", fmt.Errorf("fetch posture config: bad answer: source %q (want cluster or fleet with a document, or builtin)", clipText(a.Source))
}

// clipText bounds a value of the server's quoted in an error.
func clipText(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
