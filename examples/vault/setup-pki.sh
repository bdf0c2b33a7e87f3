#!/usr/bin/env bash
# Sets up the Vault side of certkeeper: a root CA, an intermediate CA for
# servers and one for clients, roles, CRLs, auto-tidy, and an AppRole per
# host class whose policy reaches only what certkeeper needs.
#
#   VAULT_ADDR=https://vault.example.internal:8200 VAULT_TOKEN=... ./setup-pki.sh
#
# It is idempotent for roles, policies and settings; the CA mounts are made
# once (re-running skips mounts that exist).
#
# Production note: the root CA belongs offline (an HSM or an air-gapped
# machine). Set ROOT=external to skip the root mount: the script then prints
# each intermediate's CSR to sign offline, and imports the signed chain from
# <mount>.pem in $OUT when it exists. ROOT=vault (the default)
# keeps the root in its own mount, pki_root, which is what the lab and the
# tests use.
set -euo pipefail

DOMAIN=${DOMAIN:-example.internal}
ROOT=${ROOT:-vault}
ROOT_MOUNT=${ROOT_MOUNT:-pki_root}
SERVER_MOUNT=${SERVER_MOUNT:-pki_servers}
CLIENT_MOUNT=${CLIENT_MOUNT:-pki_clients}
ROOT_TTL=${ROOT_TTL:-87600h}           # 10 years
INTERMEDIATE_TTL=${INTERMEDIATE_TTL:-26280h}   # 3 years
# Certificates, CSRs and the policy are written to OUT (default: the
# current directory).
OUT=${OUT:-$PWD}
mkdir -p "$OUT"
: "${VAULT_ADDR:?set VAULT_ADDR}" "${VAULT_TOKEN:?set VAULT_TOKEN}"

say() { printf '==> %s\n' "$*"; }

# (A pipe into grep -q would be racy under pipefail: grep exits early and
# the writer dies of SIGPIPE.)
mounted() { vault read "sys/mounts/$1" >/dev/null 2>&1; }

enable_pki() {
  local mount=$1 ttl=$2
  if ! mounted "$mount"; then
    vault secrets enable -path="$mount" pki >/dev/null
    say "mounted $mount"
  fi
  # If-Modified-Since reaches the PKI engine: a certkeeper polling a CRL
  # that has not changed gets a 304 without the CRL, which is what makes
  # polling every minute from a whole fleet cheap.
  vault secrets tune -max-lease-ttl="$ttl" -passthrough-request-headers=If-Modified-Since "$mount" >/dev/null
  # Issued certificates name where to fetch the CA and its CRL.
  vault write "$mount/config/urls" \
    issuing_certificates="$VAULT_ADDR/v1/$mount/ca" \
    crl_distribution_points="$VAULT_ADDR/v1/$mount/crl" >/dev/null
  # CRLs: auto_rebuild OFF, so every revocation rebuilds the CRL at once
  # (with it on, Vault leaves a revocation out of the CRL until its
  # periodic rebuild, days later). The price: Vault never rebuilds a CRL
  # by itself before it expires. certkeeper does that: past 80-90% of a
  # CRL's 3 days, the first host to notice asks Vault to rebuild it
  # (<mount>/crl/rotate, in the hosts' policy below). A revocation
  # reaches nginx and Apache within certkeeper's crl_refresh (1 minute)
  # plus the settle window. Trade-offs: README, "Revocation".
  vault write "$mount/config/crl" expiry=72h auto_rebuild=false enable_delta=false >/dev/null
  # Expired and revoked certificates are removed from storage daily, so
  # Vault's storage does not grow with every renewal of every host.
  vault write "$mount/config/auto-tidy" enabled=true interval_duration=24h \
    tidy_cert_store=true tidy_revoked_certs=true tidy_revoked_cert_issuer_associations=true \
    safety_buffer=72h >/dev/null
}

# --- root -------------------------------------------------------------------
if [ "$ROOT" = vault ]; then
  enable_pki "$ROOT_MOUNT" "$ROOT_TTL"
  if ! vault read -field=certificate "$ROOT_MOUNT/issuer/default" >/dev/null 2>&1; then
    vault write -field=certificate "$ROOT_MOUNT/root/generate/internal" \
      common_name="$DOMAIN root CA" issuer_name=root key_type=ec key_bits=384 ttl="$ROOT_TTL" >"$OUT/root.pem"
    say "generated the root CA in $ROOT_MOUNT (certificate in $OUT/root.pem)"
  fi
fi

# --- intermediates ----------------------------------------------------------
intermediate() {
  local mount=$1 cn=$2
  enable_pki "$mount" "$INTERMEDIATE_TTL"
  if vault read -field=certificate "$mount/issuer/default" >/dev/null 2>&1; then
    return
  fi
  local csr
  csr=$(vault write -field=csr "$mount/intermediate/generate/internal" common_name="$cn" key_type=ec key_bits=256)
  if [ "$ROOT" = vault ]; then
    local signed
    signed=$(vault write -field=certificate "$ROOT_MOUNT/root/sign-intermediate" \
      csr="$csr" format=pem ttl="$INTERMEDIATE_TTL" use_csr_values=true)
    # Importing the root with the intermediate gives the issuer a full
    # ca_chain, so certkeeper can write chain and CA files up to the root.
    printf '%s\n%s\n' "$signed" "$(vault read -field=certificate "$ROOT_MOUNT/issuer/default")" >"$OUT/$mount.pem"
  elif [ ! -f "$OUT/$mount.pem" ]; then
    printf '%s\n' "$csr" >"$OUT/$mount.csr"
    say "sign $OUT/$mount.csr with the offline root, save intermediate+root as $OUT/$mount.pem, and run again"
    return
  fi
  vault write "$mount/intermediate/set-signed" certificate=@"$OUT/$mount.pem" >/dev/null
  say "installed the intermediate CA in $mount"
}
intermediate "$SERVER_MOUNT" "$DOMAIN server CA"
intermediate "$CLIENT_MOUNT" "$DOMAIN client CA"

# A changed CRL expiry applies at the next rebuild: rebuild every CA's CRL
# now (a mount still waiting for its signed intermediate has none).
for mount in "$ROOT_MOUNT" "$SERVER_MOUNT" "$CLIENT_MOUNT"; do
  if vault read -field=certificate "$mount/issuer/default" >/dev/null 2>&1; then
    vault read "$mount/crl/rotate" >/dev/null
  fi
done

# --- roles ------------------------------------------------------------------
# Server certificates: hostnames under the domain, server auth only. Stored
# (no_store=false) so a compromised host's certificate can be revoked.
vault write "$SERVER_MOUNT/roles/web" \
  allowed_domains="$DOMAIN" allow_subdomains=true allow_bare_domains=false \
  allow_localhost=true allow_ip_sans=true \
  key_type=any server_flag=true client_flag=false \
  ttl=72h max_ttl=720h no_store=false >/dev/null
# Client certificates that servers check against the CRL: stored, so they
# can be revoked by serial and appear on the CRL.
vault write "$CLIENT_MOUNT/roles/client" \
  allowed_domains="$DOMAIN" allow_subdomains=true allow_bare_domains=false \
  key_type=any server_flag=false client_flag=true \
  ttl=24h max_ttl=168h no_store=false >/dev/null
# High-volume, short-lived workload identities: not stored (no_store=true),
# which keeps Vault's storage small; they cannot be revoked one by one, so
# their short lifetime is the revocation.
vault write "$CLIENT_MOUNT/roles/workload" \
  allowed_domains="svc.$DOMAIN" allow_subdomains=true \
  key_type=any server_flag=true client_flag=true \
  ttl=1h max_ttl=4h no_store=true >/dev/null
say "roles: $SERVER_MOUNT/roles/web, $CLIENT_MOUNT/roles/client, $CLIENT_MOUNT/roles/workload"

# --- hosts ------------------------------------------------------------------
# One AppRole per host class. Its policy is what `certkeeper policy` prints
# for a web host's config (the package's /etc/certkeeper/certkeeper.hcl and
# examples/nginx, examples/apache): sign with the two roles (also naming
# the issuer, which certkeeper does during a CA rotation, to stay with the
# old intermediate until the new one has soaked); read the issuers and
# CRLs of the client CA and the root for the client trust bundle, and of
# the server CA to see whether its own certificates were revoked; rebuild
# those CRLs when they near expiry (crl/rotate); renew its own token.
# Nothing else. A config with revoke_superseded = true needs
# "<mount>/revoke-with-key" { capabilities = ["update"] } as well
# (certkeeper policy prints it).
cat >"$OUT/policy-web-host.hcl" <<POLICY
path "$SERVER_MOUNT/sign/web"          { capabilities = ["update"] }
path "$CLIENT_MOUNT/sign/client"       { capabilities = ["update"] }
path "$SERVER_MOUNT/issuer/+/sign/web"    { capabilities = ["update"] }
path "$CLIENT_MOUNT/issuer/+/sign/client" { capabilities = ["update"] }
path "$SERVER_MOUNT/issuers"           { capabilities = ["list"] }
path "$CLIENT_MOUNT/issuers"           { capabilities = ["list"] }
path "$ROOT_MOUNT/issuers"             { capabilities = ["list"] }
path "$SERVER_MOUNT/issuer/+/json"     { capabilities = ["read"] }
path "$CLIENT_MOUNT/issuer/+/json"     { capabilities = ["read"] }
path "$ROOT_MOUNT/issuer/+/json"       { capabilities = ["read"] }
path "$SERVER_MOUNT/issuer/+/crl/pem"  { capabilities = ["read"] }
path "$CLIENT_MOUNT/issuer/+/crl/pem"  { capabilities = ["read"] }
path "$ROOT_MOUNT/issuer/+/crl/pem"    { capabilities = ["read"] }
path "$SERVER_MOUNT/crl/rotate"        { capabilities = ["read"] }
path "$CLIENT_MOUNT/crl/rotate"        { capabilities = ["read"] }
path "$ROOT_MOUNT/crl/rotate"          { capabilities = ["read"] }
path "auth/token/lookup-self"          { capabilities = ["read"] }
path "auth/token/renew-self"           { capabilities = ["update"] }
POLICY
vault policy write certkeeper-web-host "$OUT/policy-web-host.hcl" >/dev/null
vault read sys/auth/approle >/dev/null 2>&1 || vault auth enable approle >/dev/null
# secret_ids are single-host credentials: bound to nothing here, but meant
# to be delivered response-wrapped (vault write -wrap-ttl=10m ...).
vault write auth/approle/role/web-host \
  token_policies=certkeeper-web-host token_no_default_policy=true \
  token_ttl=1h token_max_ttl=24h secret_id_ttl=0 >/dev/null
say "AppRole web-host with policy certkeeper-web-host"
say "role_id:   vault read -field=role_id auth/approle/role/web-host/role-id"
say "secret_id: vault write -f -field=secret_id auth/approle/role/web-host/secret-id"
