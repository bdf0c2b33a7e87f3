#!/usr/bin/env bash
# Sets up the Vault side of the logins a fleet uses with no secret to hand
# out: certkeeper's own renewed certificate (cert auth) first, the
# machine's cloud identity (AWS IAM, GCP or Azure through jwt, or any OIDC
# issuer) as the way back in for a host that was off past its
# certificate's expiry, and the AppRole of setup-pki.sh (with a wrapped
# secret_id) last. Run setup-pki.sh first: every role made here gets its
# policy, certkeeper-web-host, which is what `certkeeper policy` prints for
# a web host's config.
#
#   VAULT_ADDR=https://vault.example.internal:8200 VAULT_TOKEN=... \
#   AWS_ACCOUNT=123456789012 AWS_ROLE_NAME=web-host ./setup-auth.sh
#
# Each section runs when its variables are set; re-running is safe.
#
#   cert     always: trusts the client CA of $CLIENT_MOUNT for names
#            matching CERT_ALLOWED_NAMES (default "*.$DOMAIN").
#   aws      AWS_ACCOUNT and AWS_ROLE_NAME: the IAM role of the instance
#            profile. AWS_SERVER_ID (default: the host of VAULT_ADDR) is the
#            X-Vault-AWS-IAM-Server-ID value certkeeper's header_value
#            must send. AWS_REGION (default us-east-1) must be certkeeper's
#            region.
#   gcp      GCP_PROJECT (and GCP_ZONES, comma-separated, to narrow it);
#            GCP_AUDIENCE (default vault/certkeeper) is certkeeper's
#            audience.
#   azure    AZURE_TENANT, AZURE_SUBSCRIPTION and AZURE_RESOURCE (the
#            application ID URI of an app registered for Vault, so the
#            token a VM hands over is good for nothing else; it is
#            certkeeper's resource); AZURE_RESOURCE_GROUP narrows it.
#   jwt      JWT_AUDIENCE and either JWT_DISCOVERY_URL (an OIDC issuer) or
#            JWT_JWKS_URL with JWT_ISSUER; JWT_SUBJECT binds the subject.
#
# Tokens from cert auth live up to PREFERRED_MAX_TTL (24h); tokens from
# the way-back methods up to FALLBACK_MAX_TTL (1h), so a host that fell
# back logs in again, with its renewed certificate, within the hour.
set -euo pipefail

DOMAIN=${DOMAIN:-example.internal}
CLIENT_MOUNT=${CLIENT_MOUNT:-pki_clients}
POLICY=${POLICY:-certkeeper-web-host}
ROLE=${ROLE:-web-host}
PREFERRED_MAX_TTL=${PREFERRED_MAX_TTL:-24h}
FALLBACK_MAX_TTL=${FALLBACK_MAX_TTL:-1h}
TOKEN_TTL=${TOKEN_TTL:-20m}
: "${VAULT_ADDR:?set VAULT_ADDR}" "${VAULT_TOKEN:?set VAULT_TOKEN}"

say() { printf '==> %s\n' "$*"; }

vault read "sys/policy/$POLICY" >/dev/null 2>&1 || { echo "policy $POLICY is missing: run setup-pki.sh first" >&2; exit 1; }

# enable TYPE PATH: an auth method at PATH, once.
enable() { vault read "sys/auth/$2" >/dev/null 2>&1 || vault auth enable -path="$2" "$1" >/dev/null; }

# json_list "a,b" prints ["a","b"].
json_list() { printf '["%s"]' "$(printf '%s' "$1" | sed 's/,/","/g')"; }

fallback_ttls="\"token_policies\":[\"$POLICY\"],\"token_no_default_policy\":true,\"token_ttl\":\"$TOKEN_TTL\",\"token_max_ttl\":\"$FALLBACK_MAX_TTL\""

# --- cert: the preferred login ------------------------------------------------
# Any client certificate of $CLIENT_MOUNT whose common name matches logs in
# as a web host: issue other client certificates from another CA, or
# narrow CERT_ALLOWED_NAMES.
enable cert cert
vault read -field=certificate "$CLIENT_MOUNT/issuer/default" >"${TMPDIR:-/tmp}/certkeeper-client-ca.$$.pem"
vault write "auth/cert/certs/$ROLE" \
  certificate=@"${TMPDIR:-/tmp}/certkeeper-client-ca.$$.pem" \
  allowed_common_names="${CERT_ALLOWED_NAMES:-*.$DOMAIN}" \
  token_policies="$POLICY" token_no_default_policy=true \
  token_ttl="$TOKEN_TTL" token_max_ttl="$PREFERRED_MAX_TTL" >/dev/null
rm -f "${TMPDIR:-/tmp}/certkeeper-client-ca.$$.pem"
say "cert auth role auth/cert/certs/$ROLE (client CA of $CLIENT_MOUNT)"

# --- approle: the last way back ------------------------------------------------
# setup-pki.sh's AppRole (a wrapped secret_id per host) stays the method of
# last resort; in this chain its tokens live no longer than the other
# way-back methods', so a host that needed it returns to cert auth soon.
if vault read "auth/approle/role/$ROLE" >/dev/null 2>&1; then
  vault write "auth/approle/role/$ROLE" token_ttl="$TOKEN_TTL" token_max_ttl="$FALLBACK_MAX_TTL" >/dev/null
  say "approle auth/approle/role/$ROLE: tokens live at most $FALLBACK_MAX_TTL"
fi

# --- aws: the instance profile -----------------------------------------------
if [ -n "${AWS_ACCOUNT:-}" ] && [ -n "${AWS_ROLE_NAME:-}" ]; then
  enable aws aws
  server_id=${AWS_SERVER_ID:-$(printf '%s' "$VAULT_ADDR" | sed -E 's#^[a-z]+://##; s#[:/].*$##')}
  region=${AWS_REGION:-us-east-1}
  sts=()
  if [ "$region" != us-east-1 ]; then
    sts=(sts_endpoint="https://sts.$region.amazonaws.com" sts_region="$region")
  fi
  # AWS_STS_ENDPOINT replaces STS (a VPC endpoint; the tests' stand-in).
  if [ -n "${AWS_STS_ENDPOINT:-}" ]; then
    sts=(sts_endpoint="$AWS_STS_ENDPOINT")
  fi
  vault write auth/aws/config/client iam_server_id_header_value="$server_id" \
    max_retries="${AWS_MAX_RETRIES:--1}" "${sts[@]}" >/dev/null
  # The ARN without a path: STS names an assumed role without one. With
  # resolve_aws_unique_ids (the default, and what to keep) Vault binds the
  # role's unique ID, so a role deleted and re-created under the same
  # name does not inherit the access; that needs iam:GetRole for Vault's
  # own AWS credentials, and cannot be turned off later.
  printf '{"auth_type":"iam","bound_iam_principal_arn":["arn:aws:iam::%s:role/%s"],"resolve_aws_unique_ids":%s,%s}' \
    "$AWS_ACCOUNT" "$AWS_ROLE_NAME" "${AWS_RESOLVE_UNIQUE_IDS:-true}" "$fallback_ttls" |
    vault write "auth/aws/role/$ROLE" - >/dev/null
  say "aws auth role auth/aws/role/$ROLE for arn:aws:iam::$AWS_ACCOUNT:role/$AWS_ROLE_NAME (header_value = \"$server_id\")"
fi

# --- gcp: the instance's identity token, through jwt ------------------------------
if [ -n "${GCP_PROJECT:-}" ]; then
  enable jwt jwt-gcp
  vault write auth/jwt-gcp/config jwks_url="${GCP_JWKS_URL:-https://www.googleapis.com/oauth2/v3/certs}" \
    bound_issuer=https://accounts.google.com >/dev/null
  claims="\"/google/compute_engine/project_id\":\"$GCP_PROJECT\""
  if [ -n "${GCP_ZONES:-}" ]; then
    claims="$claims,\"/google/compute_engine/zone\":$(json_list "$GCP_ZONES")"
  fi
  # bound_claims must be JSON (the CLI's key=value form is refused); the
  # keys are JSON pointers into the token's google.compute_engine claim.
  printf '{"role_type":"jwt","user_claim":"sub","bound_audiences":["%s"],"bound_claims":{%s},"claim_mappings":{"/google/compute_engine/instance_name":"instance_name","/google/compute_engine/zone":"zone"},%s}' \
    "${GCP_AUDIENCE:-vault/certkeeper}" "$claims" "$fallback_ttls" |
    vault write "auth/jwt-gcp/role/$ROLE" - >/dev/null
  say "jwt auth role auth/jwt-gcp/role/$ROLE for project $GCP_PROJECT (audience \"${GCP_AUDIENCE:-vault/certkeeper}\")"
fi

# --- azure: the VM's managed identity, through jwt --------------------------------
if [ -n "${AZURE_TENANT:-}" ]; then
  : "${AZURE_SUBSCRIPTION:?set AZURE_SUBSCRIPTION}" "${AZURE_RESOURCE:?set AZURE_RESOURCE}"
  enable jwt jwt-azure
  # Managed identity tokens are v1 tokens: issued by sts.windows.net.
  # Compare with the iss of a token from one of your VMs.
  vault write auth/jwt-azure/config \
    jwks_url="${AZURE_JWKS_URL:-https://login.microsoftonline.com/$AZURE_TENANT/discovery/keys}" \
    bound_issuer="https://sts.windows.net/$AZURE_TENANT/" >/dev/null
  mirid="/subscriptions/$AZURE_SUBSCRIPTION/resourcegroups/${AZURE_RESOURCE_GROUP:-*}/providers/Microsoft.Compute/virtualMachines/*"
  printf '{"role_type":"jwt","user_claim":"oid","bound_audiences":["%s"],"bound_claims_type":"glob","bound_claims":{"tid":"%s","xms_mirid":"%s"},"claim_mappings":{"xms_mirid":"resource_id"},%s}' \
    "$AZURE_RESOURCE" "$AZURE_TENANT" "$mirid" "$fallback_ttls" |
    vault write "auth/jwt-azure/role/$ROLE" - >/dev/null
  say "jwt auth role auth/jwt-azure/role/$ROLE for VMs in $mirid (resource \"$AZURE_RESOURCE\")"
fi

# --- jwt: any OIDC issuer (a Kubernetes cluster, a CI system, SPIFFE) ----------
if [ -n "${JWT_AUDIENCE:-}" ]; then
  enable jwt jwt
  if [ -n "${JWT_DISCOVERY_URL:-}" ]; then
    vault write auth/jwt/config oidc_discovery_url="$JWT_DISCOVERY_URL" >/dev/null
  else
    : "${JWT_JWKS_URL:?set JWT_DISCOVERY_URL, or JWT_JWKS_URL and JWT_ISSUER}" "${JWT_ISSUER:?set JWT_ISSUER}"
    vault write auth/jwt/config jwks_url="$JWT_JWKS_URL" bound_issuer="$JWT_ISSUER" >/dev/null
  fi
  subject=""
  if [ -n "${JWT_SUBJECT:-}" ]; then
    subject="\"bound_subject\":\"$JWT_SUBJECT\","
  fi
  printf '{"role_type":"jwt","user_claim":"sub","bound_audiences":["%s"],%s%s}' "$JWT_AUDIENCE" "$subject" "$fallback_ttls" |
    vault write "auth/jwt/role/$ROLE" - >/dev/null
  say "jwt auth role auth/jwt/role/$ROLE (audience \"$JWT_AUDIENCE\")"
fi
