package main

import (
	"context"

	"github.com/certkeeper/certkeeper/vault"
)

// prepareVault does the auth method's start-up work (unwrapping a wrapped
// secret_id) before anything else, since it cannot wait for the first
// renewal. A failure is logged, not fatal: the files on disk keep being
// served, and every login that needs the secret says why it cannot.
func prepareVault(e *env, vc *vault.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.Vault.Timeout)
	defer cancel()
	if err := vc.Prepare(ctx); err != nil {
		e.log.Error("vault auth cannot be prepared; logins will fail until this is fixed", "error", err, "alert", "vault_auth_broken")
	}
}
