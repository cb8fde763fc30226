package ship

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Get fetches path (e.g. /api/v1/exceptions) from the server with the
// client's credential, proxy and TLS settings, and decodes the JSON answer
// into out. Errors never contain the token.
func (c *Client) Get(ctx context.Context, path string, out any) error {
	base := strings.TrimSuffix(c.endpoint, IngestPath)
	rctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "vigil-ship")
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %s", path, c.redact(err.Error()))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("GET %s: %s", path, c.redact(err.Error()))
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, c.redact(serverMessage(body)))
	}
	return json.Unmarshal(body, out)
}
