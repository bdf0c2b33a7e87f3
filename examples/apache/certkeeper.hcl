# certkeeper for an Apache mTLS virtual host (examples/apache/mtls.conf)
# and a caller on the same host that talks to mTLS services with a client
# certificate. Vault has a root CA in the mount "pki" and an intermediate
# in "pki_int", with a role "server" (server_flag only) and a role
# "client" (client_flag only).
#
# test/e2e runs this very file, with paths, ports and the apache command
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

# Apache is reloaded once for every batch of changed files: a config test
# first (a failure puts the previous files back: a graceful restart with
# a broken config would stop Apache), then SIGUSR1 (graceful restart:
# connections in flight finish) to the pid in the pid file, then
# certkeeper connects and checks that Apache serves the new certificate.
service "apache2" {
  check    = ["apache2ctl", "-t"]
  pid_file = "/var/run/apache2/apache2.pid"
  signal   = "USR1"
  timeout  = "30s"
  verify {
    address     = "127.0.0.1:8443"
    server_name = "web1.example.internal"
  }
}

# The server certificates Apache presents. Keys are made here; Vault only
# signs CSRs. Apache's children never read them: the parent (root) does,
# at start and at each graceful restart.
certificate "web" {
  mount          = "pki_int"
  role           = "server"
  common_name    = "web1.example.internal"
  alt_names      = ["web1.example.internal"]
  ip_sans        = ["127.0.0.1"]
  ttl            = "72h"
  key_type       = "ec"
  cert_file      = "/etc/apache2/tls/web.crt"
  key_file       = "/etc/apache2/tls/web.key"
  fullchain_file = "/etc/apache2/tls/web.fullchain.pem"
  notify         = ["apache2"]
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
  cert_file      = "/etc/apache2/tls/web-rsa.crt"
  key_file       = "/etc/apache2/tls/web-rsa.key"
  fullchain_file = "/etc/apache2/tls/web-rsa.fullchain.pem"
  notify         = ["apache2"]
}

# The CAs and CRLs Apache verifies clients against: every usable issuer
# of pki_int and pki, and a CRL for each from the mount holding its key.
trust_bundle "clients" {
  mounts      = ["pki_int", "pki"]
  ca_file     = "/etc/apache2/tls/clients-ca.pem"
  crl_file    = "/etc/apache2/tls/clients.crl.pem"
  crl_refresh = "5m"
  notify      = ["apache2"]
}

# A client certificate for a caller on this host.
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
