package vault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// CAIssuer is one issuer of a PKI mount: a CA certificate Vault can
// issue from, or one imported into the mount (a root, usually) to
// complete chains.
type CAIssuer struct {
	Mount string
	// Ref is the issuer's id, what /issuer/<ref>/... paths take.
	Ref  string
	Name string // issuer_name; often empty
	// Certificate is the issuer's certificate, PEM.
	Certificate string
	// HasKey says the mount holds the issuer's key, so it signs a CRL for
	// it. A root imported into an intermediate's mount has none: its CRL
	// comes from the mount that holds its key.
	HasKey bool
}

// MaxCRLSize bounds a CRL download; a CRL listing a million revoked
// certificates is about 40 MB.
const MaxCRLSize = 64 << 20

// Issuers returns every issuer of mount with its certificate. PKI serves
// these without a token; when a Vault asks for one to list them, the
// agent logs in and asks again.
func (c *Client) Issuers(ctx context.Context, mount string) ([]CAIssuer, error) {
	list, err := c.ListIssuers(ctx, mount)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, &Error{Err: fmt.Errorf("%s/issuers: mount has no issuers (is %q a PKI mount with a CA?)", mount, mount)}
	}
	out := make([]CAIssuer, 0, len(list))
	for _, is := range list {
		pem, err := c.issuerCertificate(ctx, mount, is.Ref)
		if err != nil {
			return nil, err
		}
		out = append(out, CAIssuer{Mount: mount, Ref: is.Ref, Name: is.Name, HasKey: is.HasKey, Certificate: pem})
	}
	return out, nil
}

func (c *Client) issuerCertificate(ctx context.Context, mount, ref string) (string, error) {
	if !isIssuerID(ref) {
		// "default" or an issuer_name can name another issuer tomorrow.
		return c.readIssuerCertificate(ctx, mount, ref)
	}
	key := mount + "\x00" + ref
	c.issuers.mu.Lock()
	pem, ok := c.issuers.certs[key]
	c.issuers.mu.Unlock()
	if ok {
		return pem, nil
	}
	pem, err := c.readIssuerCertificate(ctx, mount, ref)
	if err != nil {
		return "", err
	}
	c.issuers.mu.Lock()
	if c.issuers.certs == nil {
		c.issuers.certs = map[string]string{}
	}
	c.issuers.certs[key] = pem
	c.issuers.mu.Unlock()
	return pem, nil
}

// isIssuerID says whether ref is an issuer id (a UUID, as Vault makes
// them), which names one issuer for good, rather than a name.
func isIssuerID(ref string) bool {
	if len(ref) != 36 {
		return false
	}
	for i, r := range ref {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if r != '-' {
				return false
			}
		case !strings.ContainsRune("0123456789abcdef", r):
			return false
		}
	}
	return true
}

func (c *Client) readIssuerCertificate(ctx context.Context, mount, ref string) (string, error) {
	path := fmt.Sprintf("%s/issuer/%s/json", mount, ref)
	ctx, info := withCallInfo(ctx)
	sec, err := c.api.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, classify(err, info))
	}
	if sec == nil || sec.Data == nil {
		return "", &Error{Status: http.StatusNotFound, Err: fmt.Errorf("%s: issuer not found", path)}
	}
	pem, _ := sec.Data["certificate"].(string)
	if strings.TrimSpace(pem) == "" {
		return "", &Error{Err: fmt.Errorf("%s: no certificate in vault's answer", path)}
	}
	return pem, nil
}

// CRLAnswer is Vault's answer to a CRL request.
type CRLAnswer struct {
	// Data is the CRL as Vault serves it (PEM), not yet checked; nil when
	// Vault answered 304 Not Modified.
	Data []byte
	// Date is when Vault answered, by Vault's own clock (its Date
	// header), so the next request can ask for changes since then
	// without trusting this host's clock; zero when Vault sent none.
	Date time.Time
}

// NotModified says Vault answered that the CRL did not change.
func (a *CRLAnswer) NotModified() bool { return a.Data == nil }

// CRL returns the CRL that issuer ref of mount signs. With since set, it
// asks Vault for it only if it was rebuilt since then (If-Modified-Since):
// an unchanged CRL costs Vault a 304 and no body. Vault honours that only
// on mounts tuned with -passthrough-request-headers=If-Modified-Since;
// elsewhere every answer is the whole CRL, which is merely slower.
func (c *Client) CRL(ctx context.Context, mount, ref string, since time.Time) (*CRLAnswer, error) {
	path := fmt.Sprintf("%s/issuer/%s/crl/pem", mount, ref)
	ctx, cancel := context.WithTimeout(ctx, c.api.ClientTimeout())
	defer cancel()
	ctx, info := withCallInfo(ctx)
	r := c.api.NewRequest(http.MethodGet, "/v1/"+path)
	if !since.IsZero() {
		r.Headers = http.Header{"If-Modified-Since": {since.UTC().Format(http.TimeFormat)}}
	}
	// The raw request is the api client's only way to send a header on
	// one request without cloning the client.
	resp, err := c.api.RawRequestWithContext(ctx, r) //nolint:staticcheck
	if resp != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, classify(err, info))
	}
	answer := &CRLAnswer{}
	if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		answer.Date = d
	}
	if resp.StatusCode == http.StatusNotModified {
		if since.IsZero() {
			return nil, &Error{Status: resp.StatusCode, Err: fmt.Errorf("%s: vault answered 304 to a request that asked for no condition", path)}
		}
		return answer, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxCRLSize+1))
	if err != nil {
		return nil, &Error{Err: fmt.Errorf("%s: reading crl: %w", path, err)}
	}
	if len(body) > MaxCRLSize {
		return nil, &Error{Err: fmt.Errorf("%s: crl larger than %d bytes", path, MaxCRLSize)}
	}
	if len(body) == 0 {
		return nil, &Error{Status: resp.StatusCode, Err: fmt.Errorf("%s: vault answered %d with no crl", path, resp.StatusCode)}
	}
	answer.Data = body
	return answer, nil
}

// RotateCRL asks Vault to rebuild every CRL of mount now
// (<mount>/crl/rotate, a read). A mount whose CRLs Vault rebuilds only on
// a revocation (auto_rebuild off) needs it before they expire.
func (c *Client) RotateCRL(ctx context.Context, mount string) error {
	path := mount + "/crl/rotate"
	if _, err := c.authed(ctx, path, func(ctx context.Context) (*api.Secret, error) {
		return c.api.Logical().ReadWithContext(ctx, path)
	}); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// list sends a LIST without logging in first, and with a login when Vault
// answers that it wants a token.
func (c *Client) list(ctx context.Context, path string) (*api.Secret, error) {
	lctx, info := withCallInfo(ctx)
	sec, err := c.api.Logical().ListWithContext(lctx, path)
	if err == nil {
		return sec, nil
	}
	err = classify(err, info)
	var ve *Error
	if !errors.As(err, &ve) || (ve.Status != http.StatusForbidden && ve.Status != http.StatusUnauthorized) {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		gen, err := c.session.ensure(ctx)
		if err != nil {
			return nil, err
		}
		lctx, info := withCallInfo(ctx)
		sec, err := c.api.Logical().ListWithContext(lctx, path)
		if err == nil {
			return sec, nil
		}
		err = classify(err, info)
		if errors.As(err, &ve) && ve.Status == http.StatusForbidden {
			// As for writes: log in again only when that may help, so a
			// bundle whose mount does not exist does not log in at every
			// retry.
			if attempt == 0 && c.session.reloginMayHelp(ctx, gen) {
				c.session.invalidate(gen)
				continue
			}
			if attempt > 0 {
				c.session.noteDenied(gen)
			}
			return nil, &DeniedError{Path: path, Err: err}
		}
		return nil, err
	}
}
