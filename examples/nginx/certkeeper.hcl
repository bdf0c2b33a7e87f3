# certkeeper for an nginx mTLS server (examples/nginx/mtls.conf) and a
# caller on the same host that talks to mTLS services with a client
# certificate. Vault has a root CA in the mount "pki" and an intermediate
# in "pki_int", with a role "server" (server_flag only) and a role
# "client" (client_flag only).
#
# test/e2e runs this very file, with paths, ports and the nginx command
# line swapped for a temporary directory.

state_dir = "/var/lib/certkeeper"

vault {
  address = "https://vault.example.internal:8200"
  # ca_cert = "/etc/certkeeper/vault-ca.pem"
  auth "approle" {
    role_id_file   = "/etc/certkeeper/role-id"
    secret_id_file = "/etc/certkeeper/secret-id"
  }
}

# nginx is reloaded once for every batch of changed files: `nginx -t`
# first (a failure puts the previous files back and nginx keeps serving
# them), then `nginx -s reload`, then certkeeper connects and checks that
# nginx serves the new certificate.
service "nginx" {
  check    = ["nginx", "-t", "-q"]
  reload   = ["nginx", "-s", "reload"]
  pid_file = "/run/nginx.pid" # no nginx running: nothing to reload
  timeout  = "30s"
  verify {
    address     = "127.0.0.1:8443"
    server_name = "web1.example.internal"
  }
}

# The server certificates nginx presents. Keys are made here; Vault only
# signs CSRs.
certificate "web" {
  mount          = "pki_int"
  role           = "server"
  common_name    = "web1.example.internal"
  alt_names      = ["web1.example.internal"]
  ip_sans        = ["127.0.0.1"]
  ttl            = "72h"
  key_type       = "ec"
  cert_file      = "/etc/nginx/tls/web.crt"
  key_file       = "/etc/nginx/tls/web.key"
  fullchain_file = "/etc/nginx/tls/web.fullchain.pem"
  notify         = ["nginx"]
}

certificate "web-rsa" {
  mount          = "pki_int"
  role           = "server"
  common_name    = "web1.example.internal"
  alt_names      = ["web1.example.internal"]
  ip_sans        = ["127.0.0.1"]
  ttl            = "72h"
  key_type       = "rsa"
  key_bits       = 2048
  cert_file      = "/etc/nginx/tls/web-rsa.crt"
  key_file       = "/etc/nginx/tls/web-rsa.key"
  fullchain_file = "/etc/nginx/tls/web-rsa.fullchain.pem"
  notify         = ["nginx"]
}

# The CAs (and their CRLs) nginx verifies clients against: every usable
# issuer of pki_int (intermediates, old and new during a rotation) and of
# pki (the root), and a CRL for each, taken from the mount that holds the
# CA's key. A revoked client is rejected after the next refresh.
trust_bundle "clients" {
  mounts      = ["pki_int", "pki"]
  ca_file     = "/etc/nginx/tls/clients-ca.pem"
  crl_file    = "/etc/nginx/tls/clients.crl.pem"
  crl_refresh = "5m"
  notify      = ["nginx"]
}

# A client certificate for a caller on this host: an application that
# calls mTLS services presents caller.fullchain.pem and caller.key, and
# verifies servers against caller.ca.pem. It notifies nothing here; add
# a service for the caller if it must be told.
certificate "caller" {
  mount          = "pki_int"
  role           = "client"
  common_name    = "caller.example.internal"
  ttl            = "24h"
  cert_file      = "/etc/caller/tls/caller.crt"
  key_file       = "/etc/caller/tls/caller.key"
  fullchain_file = "/etc/caller/tls/caller.fullchain.pem"
  ca_file        = "/etc/caller/tls/caller.ca.pem"
}
