package vault

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/certkeeper/certkeeper/config"
)

// jwtLogin is Vault's jwt auth method with a JWT from a file (read at
// every login: such files rotate) or from the cloud's metadata server,
// which mints a fresh one for the audience asked. The JWT is a bearer
// credential until it expires: it goes to Vault and nowhere else, and no
// message ever quotes it.
type jwtLogin struct {
	cfg     config.Auth
	http    *http.Client
	timeout time.Duration
}

func newJWTLogin(a config.Auth, env loginEnv) *jwtLogin {
	return &jwtLogin{cfg: a, http: metadataHTTPClient(env.timeout), timeout: env.timeout}
}

func (l *jwtLogin) login(ctx context.Context, c *api.Client) (*api.Secret, error) {
	jwt, err := l.token(ctx)
	if err != nil {
		return nil, fmt.Errorf("jwt login (role %s): %w", l.cfg.Role, err)
	}
	ctx, info := withCallInfo(ctx)
	secret, err := c.Logical().WriteWithContext(ctx, "auth/"+l.cfg.Mount+"/login", map[string]any{"role": l.cfg.Role, "jwt": jwt})
	if err != nil {
		return nil, fmt.Errorf("jwt login (role %s): %w", l.cfg.Role, classify(err, info))
	}
	if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
		return nil, fmt.Errorf("jwt login (role %s): vault returned no token", l.cfg.Role)
	}
	c.SetToken(secret.Auth.ClientToken)
	return secret, nil
}

// token gets the JWT from where the config says.
func (l *jwtLogin) token(ctx context.Context) (string, error) {
	switch l.cfg.Metadata {
	case config.MetadataGCP:
		q := url.Values{"audience": {l.cfg.Audience}, "format": {"full"}}
		body, _, err := l.fetch(ctx, "gcp", "/computeMetadata/v1/instance/service-accounts/default/identity?"+q.Encode(), "Metadata-Flavor", "Google")
		if err != nil {
			return "", err
		}
		jwt := strings.TrimSpace(string(body))
		if err := checkJWT(jwt); err != nil {
			return "", fmt.Errorf("the gcp metadata server answered something that is not a JWT (%d bytes): %w", len(body), err)
		}
		return jwt, nil
	case config.MetadataAzure:
		q := url.Values{"api-version": {"2018-02-01"}, "resource": {l.cfg.Audience}}
		body, ctype, err := l.fetch(ctx, "azure", "/metadata/identity/oauth2/token?"+q.Encode(), "Metadata", "true")
		if err != nil {
			return "", err
		}
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.Unmarshal(body, &tok); err != nil {
			return "", fmt.Errorf("the azure metadata server answered something that is not its token JSON (%d bytes of %s)", len(body), printable(ctype))
		}
		if err := checkJWT(tok.AccessToken); err != nil {
			return "", fmt.Errorf("the azure metadata server's access_token is not a JWT: %w", err)
		}
		return tok.AccessToken, nil
	}
	b, err := readLimitedFile(l.cfg.TokenFile)
	if err != nil {
		return "", fmt.Errorf("reading the JWT: %w", err)
	}
	jwt := strings.TrimSpace(string(b))
	if err := checkJWT(jwt); err != nil {
		return "", fmt.Errorf("%s does not hold a JWT: %w", l.cfg.TokenFile, err)
	}
	return jwt, nil
}

// maxMetadataAnswer bounds what is read from a metadata server or a token
// file: JWTs are a few kilobytes.
const maxMetadataAnswer = 1 << 20

// fetch GETs path from the metadata server, within the request timeout,
// and returns the body of a 200. Failures say what came back, never the
// body itself (beyond Azure's error code and description).
func (l *jwtLogin) fetch(ctx context.Context, cloud, path, header, value string) ([]byte, string, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	u := l.cfg.MetadataURL + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", fmt.Errorf("%s metadata request: %w", cloud, err)
	}
	req.Header.Set(header, value)
	resp, err := l.http.Do(req)
	if err != nil {
		if timedOut(ctx) {
			return nil, "", fmt.Errorf("the %s metadata server at %s did not answer within %s", cloud, l.cfg.MetadataURL, l.timeout)
		}
		return nil, "", fmt.Errorf("asking the %s metadata server at %s: %w", cloud, l.cfg.MetadataURL, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataAnswer+1))
	if err != nil {
		if timedOut(ctx) {
			return nil, "", fmt.Errorf("the %s metadata server at %s did not finish its answer within %s", cloud, l.cfg.MetadataURL, l.timeout)
		}
		return nil, "", fmt.Errorf("reading the %s metadata server's answer: %w", cloud, err)
	}
	ctype := resp.Header.Get("Content-Type")
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("the %s metadata server answered %d%s", cloud, resp.StatusCode, azureError(body))
	}
	if len(body) > maxMetadataAnswer {
		return nil, "", fmt.Errorf("the %s metadata server's answer is larger than %d bytes", cloud, maxMetadataAnswer)
	}
	return body, ctype, nil
}

// azureError is the error code and description of an Azure IMDS error
// answer ({"error":"invalid_request","error_description":"..."}), which
// say what to fix (an identity not assigned, a wrong resource); empty for
// anything else, which is not quoted.
func azureError(body []byte) string {
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		return ""
	}
	msg := ": " + printable(e.Error)
	if e.Description != "" {
		msg += ": " + printable(e.Description)
	}
	return msg
}

// printable keeps a string from elsewhere short and on one line.
func printable(s string) string {
	if mt, _, err := mime.ParseMediaType(s); err == nil {
		s = mt
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		return "no content type"
	}
	return s
}

// checkJWT checks the shape of a compact JWS (header.payload.signature,
// base64url, a JSON header with an alg), so a wrong file or a metadata
// server's error page is reported here, plainly, rather than as whatever
// Vault makes of it.
func checkJWT(s string) error {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return fmt.Errorf("want three base64url parts separated by dots, found %d", len(parts))
	}
	if parts[2] == "" {
		return errors.New("it has no signature")
	}
	for _, p := range parts {
		if _, err := base64.RawURLEncoding.DecodeString(p); err != nil {
			return errors.New("a part is not base64url")
		}
	}
	hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
	var h struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(hdr, &h) != nil || h.Alg == "" {
		return errors.New("its header is not a JSON object with an alg")
	}
	return nil
}

func readLimitedFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMetadataAnswer+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxMetadataAnswer {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxMetadataAnswer)
	}
	return b, nil
}

// timedOut says whether err is the request timeout (ctx's) running out,
// not some shorter timeout inside, such as a dial to an address where
// nothing answers.
func timedOut(ctx context.Context) bool {
	return errors.Is(ctx.Err(), context.DeadlineExceeded)
}

// metadataHTTPClient talks to a metadata server: on the link-local
// address or a host's own, never through a proxy (HTTPS_PROXY must not
// see the answers, which are credentials), never following a redirect
// (a metadata server does not redirect; whatever does is not one). The
// caller's context bounds each request by the request timeout; a
// metadata address that nothing answers on is given up on sooner.
func metadataHTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:           nil,
			DialContext:     (&net.Dialer{Timeout: min(timeout, 2*time.Second)}).DialContext,
			MaxIdleConns:    2,
			IdleConnTimeout: 30 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
