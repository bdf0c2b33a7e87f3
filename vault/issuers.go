package vault

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"golang.org/x/sync/singleflight"
)

// IssuerInfo is what a mount's issuer list says about one issuer; its
// certificate is read separately (IssuerCertificate), once per issuer.
type IssuerInfo struct {
	Ref  string // the issuer id, what /issuer/<ref>/... paths take
	Name string // issuer_name; often empty
	// Default: the mount signs and issues with it when no issuer is named
	// (<mount>/config/issuers).
	Default bool
	HasKey  bool
}

// issuerCache spares Vault the reads that answer the same thing twice.
// The agent's CA rotation check and the trust keeper's revocation check
// both list a mount's issuers and read their certificates, each at start
// and each on its own period: a restart cost seven requests where three
// say it all.
type issuerCache struct {
	// lists shares one LIST between callers asking at the same time; a
	// caller that comes after it answered asks Vault again, so nobody
	// sees an older list than a call of its own would have.
	lists singleflight.Group
	// certs holds each issuer's certificate by mount and issuer id. An
	// issuer's certificate never changes (Vault lets a name, usage or
	// chain be edited, not the certificate; a new CA is a new issuer
	// with a new id), so it is read once per process. Bounded by the
	// issuers of the configured mounts.
	mu    sync.Mutex
	certs map[string]string
}

// ListIssuers lists the issuers of mount, saying which is the default.
// PKI answers without a token; a Vault that wants one gets a login.
func (c *Client) ListIssuers(ctx context.Context, mount string) ([]IssuerInfo, error) {
	v, err, _ := c.issuers.lists.Do(mount, func() (any, error) {
		return c.listIssuers(ctx, mount)
	})
	if err != nil {
		return nil, err
	}
	// Each caller gets its own slice: callers may sort or trim theirs.
	return slices.Clone(v.([]IssuerInfo)), nil
}

func (c *Client) listIssuers(ctx context.Context, mount string) ([]IssuerInfo, error) {
	path := mount + "/issuers"
	sec, err := c.list(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if sec == nil || sec.Data == nil {
		return nil, &Error{Err: fmt.Errorf("%s: mount has no issuers (is %q a PKI mount with a CA?)", path, mount)}
	}
	keys, _ := sec.Data["keys"].([]any)
	infos, _ := sec.Data["key_info"].(map[string]any)
	var out []IssuerInfo
	for _, k := range keys {
		ref, ok := k.(string)
		if !ok {
			return nil, &Error{Err: fmt.Errorf("%s: issuer id is a %T, not a string", path, k)}
		}
		is := IssuerInfo{Ref: ref}
		if info, ok := infos[ref].(map[string]any); ok {
			keyID, _ := info["key_id"].(string)
			is.HasKey = keyID != ""
			is.Name, _ = info["issuer_name"].(string)
			is.Default, _ = info["is_default"].(bool)
		}
		out = append(out, is)
	}
	return out, nil
}

// IssuerCertificate is the certificate (PEM) of issuer ref of mount.
func (c *Client) IssuerCertificate(ctx context.Context, mount, ref string) (string, error) {
	return c.issuerCertificate(ctx, mount, ref)
}
