package gateway

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"

	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/internal/jsonenc"
	"github.com/pushbackd/pushbackd/security"
)

// maxTokenRequest bounds a token request's body: a client_credentials form is a few
// hundred bytes.
const maxTokenRequest = 4 << 10

// tokenIssuer is what the token endpoint needs of an endpoint's verifier; *security.Check
// is one.
type tokenIssuer interface {
	IssueToken(partner, id, secret string, now time.Time) (token string, ttl time.Duration, ok bool)
}

// tokenAnswer is RFC 6749 §5.1's success.
type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

// tokenError is RFC 6749 §5.2's error.
type tokenError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// oauthRealm is the Basic realm of invalid_client answers.
const oauthRealm = `Basic realm="pushbackd"`

// token serves POST /oauth/{partner}/token: the client_credentials grant (RFC 6749 §4.4)
// with client_secret_basic or client_secret_post, for any client of any oauth2 endpoint of
// the partner or its sites.
func (g *Gateway) token(c echo.Context) error {
	r := c.Request()
	rest, _ := strings.CutPrefix(r.URL.EscapedPath(), "/oauth/")
	partnerID, tail, _ := strings.Cut(rest, "/")
	cfg := g.opts.Config.Current()
	if tail != "token" || !config.IDPattern.MatchString(partnerID) || cfg.Partner(partnerID) == nil {
		return errNotFound
	}
	partner := cfg.Partner(partnerID)
	exchangeOf(c).partner = partnerID
	if r.Method != http.MethodPost {
		return &httpError{code: http.StatusMethodNotAllowed, message: "the token endpoint accepts POST only",
			header: http.Header{"Allow": {http.MethodPost}}}
	}
	remote := cfg.Server.Proxy.ClientAddr(r)
	log := g.opts.Logger.With(zap.String("partner", partnerID), zap.Stringer("remote_ip", remote))
	if blocked, wait := g.clients.Blocked(remote); blocked {
		g.opts.Observer.AuthFailure(partnerID, "", "", security.OAuth2, security.ReasonRateLimited)
		log.Warn("client out of authentication tries; refusing token request")
		return tooManyFailures(wait)
	}
	raw, err := readBody(r, c.Response(), maxTokenRequest)
	if err != nil {
		return err
	}
	if mt, _, _ := strings.Cut(r.Header.Get(echo.HeaderContentType), ";"); !strings.EqualFold(strings.TrimSpace(mt), "application/x-www-form-urlencoded") {
		return tokenFail(c, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
	}
	form, err := url.ParseQuery(string(raw))
	if err != nil {
		return tokenFail(c, http.StatusBadRequest, "invalid_request", "the body is not a valid form")
	}
	for k, vs := range form {
		if len(vs) > 1 {
			return tokenFail(c, http.StatusBadRequest, "invalid_request", "parameter "+k+" is repeated")
		}
	}
	switch gt := form.Get("grant_type"); gt {
	case "":
		return tokenFail(c, http.StatusBadRequest, "invalid_request", "grant_type is missing")
	case "client_credentials":
	default:
		return tokenFail(c, http.StatusBadRequest, "unsupported_grant_type", "only client_credentials is supported")
	}
	id, secret, problem := clientCredentials(r.Header, form)
	switch {
	case problem != "":
		return tokenFail(c, http.StatusBadRequest, "invalid_request", problem)
	case id == "":
		return g.refuseClient(c, partnerID, remote.String(), security.ReasonMissing, "no client credentials", log)
	case secret == "":
		// RFC 6749 §5.2: a client that names itself without authenticating is
		// invalid_client (401), not a malformed request. Counted as missing: no secret was
		// tried, so the client's failure budget is not spent.
		return g.refuseClient(c, partnerID, remote.String(), security.ReasonMissing, "client_id without client_secret", log)
	}
	now := g.opts.Now()
	for _, e := range partnerEndpoints(partner) {
		iss, ok := e.Verifier().(tokenIssuer)
		if !ok || e.Verifier().Method() != security.OAuth2 {
			continue
		}
		if tok, ttl, ok := iss.IssueToken(partnerID, id, secret, now); ok {
			log.Info("issued an oauth2 token", zap.String("client_id", id), zap.Duration("ttl", ttl))
			c.Response().Header().Set("Cache-Control", "no-store")
			c.Response().Header().Set("Pragma", "no-cache")
			return tokenJSON(c, http.StatusOK, tokenAnswer{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int64(ttl / time.Second)})
		}
	}
	if g.clients.Fail(remote) {
		_, wait := g.clients.Blocked(remote)
		return tooManyFailures(wait)
	}
	return g.refuseClient(c, partnerID, remote.String(), security.ReasonMismatch, "unknown client or wrong secret", log)
}

// refuseClient is invalid_client: 401 with a Basic challenge (RFC 6749 §5.2), the same
// answer whether the id or the secret was wrong or missing; only the counted reason
// (missing or mismatch) and the log tell them apart. §5.2 requires the challenge when the
// client used Basic and allows it otherwise, so it is always sent.
func (g *Gateway) refuseClient(c echo.Context, partner, remote string, reason security.Reason, why string, log *zap.Logger) error {
	g.opts.Observer.AuthFailure(partner, "", "", security.OAuth2, reason)
	log.Warn("token request refused", zap.String("reason", string(reason)), zap.String("detail", why))
	c.Response().Header().Set(echo.HeaderWWWAuthenticate, oauthRealm)
	return tokenFail(c, http.StatusUnauthorized, "invalid_client", "client authentication failed")
}

// clientCredentials reads client_secret_basic (Authorization: Basic, id and secret each
// form-encoded, §2.3.1) or client_secret_post (client_id and client_secret in the form).
// Both at once is a request error (§2.3).
func clientCredentials(h http.Header, form url.Values) (id, secret, problem string) {
	postID, postSecret := form.Get("client_id"), form.Get("client_secret")
	auth := h.Values("Authorization")
	if len(auth) > 1 {
		return "", "", "Authorization is repeated"
	}
	if len(auth) == 1 {
		scheme, cred, _ := strings.Cut(auth[0], " ")
		if !strings.EqualFold(scheme, "Basic") {
			return "", "", "Authorization must be Basic client credentials"
		}
		if postSecret != "" {
			return "", "", "client credentials are both in Authorization and in the body"
		}
		dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		if err != nil {
			return "", "", "Authorization Basic is not base64"
		}
		rawID, rawSecret, ok := strings.Cut(string(dec), ":")
		if !ok {
			return "", "", "Authorization Basic has no ':'"
		}
		id, err1 := url.QueryUnescape(rawID)
		secret, err2 := url.QueryUnescape(rawSecret)
		if err1 != nil || err2 != nil {
			return "", "", "Authorization Basic credentials are not form-encoded"
		}
		if postID != "" && postID != id {
			return "", "", "client_id differs from the Authorization client"
		}
		return id, secret, ""
	}
	// A client_id without client_secret comes back with an empty secret: the caller answers
	// invalid_client (§5.2), not invalid_request.
	return postID, postSecret, ""
}

// partnerEndpoints lists the partner's endpoints and its sites'.
func partnerEndpoints(p *config.Partner) []*config.Endpoint {
	out := append([]*config.Endpoint(nil), p.Endpoints...)
	for _, s := range p.Sites {
		out = append(out, s.Endpoints...)
	}
	return out
}

func tokenFail(c echo.Context, code int, kind, description string) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	c.Response().Header().Set("Pragma", "no-cache")
	return tokenJSON(c, code, tokenError{Error: kind, Description: description})
}

func tokenJSON(c echo.Context, code int, v any) error {
	b, err := jsonenc.AppendValue(make([]byte, 0, 256), v)
	if err != nil {
		return err
	}
	writeEncoded(c, code, b)
	return nil
}
