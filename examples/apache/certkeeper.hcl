# certkeeper for an Apache mTLS virtual host (examples/apache/mtls.conf)
# and a caller on the same host that talks to mTLS services with a client
# certificate. The Vault side is examples/vault/setup-pki.sh, as it is:
# server certificates from pki_servers (role web), client certificates
# from pki_clients (role client), both under the root CA in pki_root, and
# the AppRole web-host whose policy reaches exactly this.
#
# Everything is written to /etc/ssl/certkeeper, which the package creates
# for the user certkeeper (the unit's ReadWritePaths).
#
# test/e2e runs this very file with paths, ports and the apache command
# line swapped for a temporary directory; test/packaging runs it on
# Debian's own Apache with only the addresses changed.

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
# connections in flight finish) to the pid in the pid file (root's;
# certkeeper has CAP_KILL for it), then certkeeper connects and checks
# that Apache serves the new certificate. On Debian `apache2ctl -t` needs
# root (it creates /run/apache2), hence sudo, which
# /etc/sudoers.d/certkeeper allows for exactly this line.
service "apache2" {
  check    = ["sudo", "-n", "/usr/sbin/apache2ctl", "-t"]
  pid_file = "/var/run/apache2/apache2.pid"
  signal   = "USR1"
  timeout  = "30s"
  verify {
    address     = "127.0.0.1:8444"
    server_name = "web1.example.internal"
    # After every change to the client trust bundle, connect with the
    # caller's client certificate and expect to be let in; a CA or CRL file
    # with which the server refuses valid clients is rolled back.
    client_certificate = "caller"
  }
}

# The server certificates Apache presents. Keys are made here; Vault only
# signs CSRs. Apache's children never read them: the parent (root) does,
# at start and at each graceful restart.
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
  notify         = ["apache2"]
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
  notify         = ["apache2"]
}

# The CAs and CRLs Apache verifies clients against: every usable issuer
# of pki_clients and pki_root, and a CRL for each from the mount holding
# its key.
trust_bundle "clients" {
  mounts      = ["pki_clients", "pki_root"]
  ca_file     = "/etc/ssl/certkeeper/clients-ca.pem"
  crl_file    = "/etc/ssl/certkeeper/clients.crl.pem"
  crl_refresh = "1m" # the default: a revocation reaches the server within about a minute
  notify      = ["apache2"]
}

# A client certificate for a caller on this host.
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
