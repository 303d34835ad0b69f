package security

import (
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Sign returns what a correct sender would send with body for cfg: headers to set and query
// parameters to add. It serves the CLI's sign and curl commands and the tests. Where cfg
// lists several secrets, keys or tokens it uses the first. For standard_webhooks it uses
// msgID (a random "msg_<hex>" when empty) and now (time.Now() when zero).
func Sign(cfg Config, body []byte, msgID string, now time.Time) (http.Header, url.Values, error) {
	c, err := Compile(cfg, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid security config: %w", err)
	}
	h, q := http.Header{}, url.Values{}
	if err := c.sign(body, msgID, now, h, q); err != nil {
		return nil, nil, err
	}
	return h, q, nil
}
