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
// msgID (a random "msg_<hex>" when empty); timestamped methods use now (time.Now() when
// zero).
func Sign(cfg Config, body []byte, msgID string, now time.Time) (http.Header, url.Values, error) {
	return SignFor(cfg, nil, body, msgID, now)
}

// SignFor is Sign for a request to target, which aws_sigv4 signs too (its host, path and
// query); the other methods ignore it.
func SignFor(cfg Config, target *url.URL, body []byte, msgID string, now time.Time) (http.Header, url.Values, error) {
	c, err := Compile(cfg, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid security config: %w", err)
	}
	h, q := http.Header{}, url.Values{}
	if err := c.sign(&signing{body: body, msgID: msgID, now: now, target: target}, h, q); err != nil {
		return nil, nil, err
	}
	return h, q, nil
}

// Timestamped reports whether what cfg's method signs carries the time it was signed,
// so a signed request is accepted only within a tolerance of it.
func Timestamped(cfg Config) bool {
	var p problems
	cfg = withPreset(cfg, &p)
	return cfg.Method == StandardWebhooks || cfg.Method == AWSSigV4 || cfg.Method == Signature && (cfg.TimestampHeader != "" || cfg.TimestampPart != "")
}
