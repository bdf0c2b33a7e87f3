# certkeeper for an nginx mTLS server (examples/nginx/mtls.conf) and a
# caller on the same host that talks to mTLS services with a client
# certificate. The Vault side is examples/vault/setup-pki.sh, as it is:
# server certificates from pki_servers (role web), client certificates
# from pki_clients (role client), both under the root CA in pki_root, and
# the AppRole web-host whose policy reaches exactly this.
#
# Everything is written to /etc/ssl/certkeeper, which the package creates
# for the user certkeeper (the unit's ReadWritePaths).
#
# test/e2e runs this very file with paths, ports and the nginx command
# lines swapped for a temporary directory; test/packaging runs it on
# Debian's own nginx with only the addresses changed.

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
# them), then SIGHUP to the master (root's; certkeeper has CAP_KILL for
# it), then certkeeper connects and checks that nginx serves the new
# certificate. On Debian `nginx -t` needs root (it opens /run/nginx.pid),
# hence sudo, which /etc/sudoers.d/certkeeper allows for exactly this line.
service "nginx" {
  check    = ["sudo", "-n", "/usr/sbin/nginx", "-t", "-q"]
  pid_file = "/run/nginx.pid" # no nginx running: nothing to reload
  signal   = "HUP"
  timeout  = "30s"
  verify {
    address     = "127.0.0.1:8443"
    server_name = "web1.example.internal"
    # After every change to the client trust bundle, connect with the
    # caller's client certificate and expect to be let in; a CA or CRL file
    # with which the server refuses valid clients is rolled back.
    client_certificate = "caller"
  }
}

# The server certificates nginx presents. Keys are made here; Vault only
# signs CSRs.
certificate "web" {
  mount          = "pki_servers"
  role           = "web"
  common_name    = "web1.example.internal"
  alt_names      = ["web1.example.internal"]
  ip_sans        = ["127.0.0.1"]
  ttl            = "72h"
  key_type       = "ec"
  cert_file      = "/etc/ssl/certkeeper/web.crt"
  key_file       = "/etc/ssl/certkeeper/web.key"
  fullchain_file = "/etc/ssl/certkeeper/web.fullchain.pem"
  notify         = ["nginx"]
}

certificate "web-rsa" {
  mount          = "pki_servers"
  role           = "web"
  common_name    = "web1.example.internal"
  alt_names      = ["web1.example.internal"]
  ip_sans        = ["127.0.0.1"]
  ttl            = "72h"
  key_type       = "rsa"
  key_bits       = 2048
  cert_file      = "/etc/ssl/certkeeper/web-rsa.crt"
  key_file       = "/etc/ssl/certkeeper/web-rsa.key"
  fullchain_file = "/etc/ssl/certkeeper/web-rsa.fullchain.pem"
  notify         = ["nginx"]
}

# The CAs (and their CRLs) nginx verifies clients against: every usable
# issuer of pki_clients (intermediates, old and new during a rotation)
# and of pki_root, and a CRL for each, taken from the mount that holds the
# CA's key. A revoked client is rejected after the next refresh.
trust_bundle "clients" {
  mounts      = ["pki_clients", "pki_root"]
  ca_file     = "/etc/ssl/certkeeper/clients-ca.pem"
  crl_file    = "/etc/ssl/certkeeper/clients.crl.pem"
  crl_refresh = "1m" # the default: a revocation reaches the server within about a minute
  notify      = ["nginx"]
}

# A client certificate for a caller on this host: an application that
# calls mTLS services presents caller.fullchain.pem and caller.key, and
# verifies servers against caller.ca.pem. It notifies nothing here; add
# a service for the caller if it must be told (and group/key_mode so the
# application can read the key).
certificate "caller" {
  mount          = "pki_clients"
  role           = "client"
  common_name    = "caller.example.internal"
  ttl            = "24h"
  cert_file      = "/etc/ssl/certkeeper/caller.crt"
  key_file       = "/etc/ssl/certkeeper/caller.key"
  fullchain_file = "/etc/ssl/certkeeper/caller.fullchain.pem"
  ca_file        = "/etc/ssl/certkeeper/caller.ca.pem"
}
