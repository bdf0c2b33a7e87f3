# /etc/certkeeper/certkeeper.hcl, installed by the certkeeper package.
#
# It feeds Debian's nginx and Apache, configured with the examples in
# /usr/share/doc/certkeeper/examples/nginx/mtls.conf and .../apache/mtls.conf,
# from the Vault PKI that examples/vault/setup-pki.sh makes (pki_servers
# with role web, pki_clients with role client, under pki_root; AppRole
# web-host). On a host that runs only one of the two servers, delete the
# other's service block and its name from the notify lists.
#
# First run, as root, with role-id and secret-id from Vault in the current
# directory (the README's "Install on a fleet" has every step):
#   install -m 0640 -o root -g certkeeper role-id secret-id /etc/certkeeper/
#   (set address in the vault block below)
#   certkeeper validate
#   certkeeper once
#   systemctl enable --now certkeeper
# `certkeeper once` started as root runs as certkeeper, the owner of
# /var/lib/certkeeper, so every file it writes is the daemon's.
#
# Every option: `man certkeeper` (CONFIGURATION) and
# /usr/share/doc/certkeeper/README.md.

state_dir = "/var/lib/certkeeper"

vault {
  address = "https://vault.example.internal:8200"
  # ca_cert = "/etc/certkeeper/vault-ca.pem"   # default: the system roots

  auth "approle" {
    role_id_file   = "/etc/certkeeper/role-id"
    secret_id_file = "/etc/certkeeper/secret-id"
  }
}

# nginx: its config is checked with the new files in place (through sudo:
# on Debian `nginx -t` needs root, and /etc/sudoers.d/certkeeper allows
# exactly this line), then its root-owned master gets SIGHUP (the unit
# gives certkeeper CAP_KILL for that), then certkeeper checks that nginx
# serves the new certificate. A failed check puts the previous files back.
service "nginx" {
  check    = ["sudo", "-n", "/usr/sbin/nginx", "-t", "-q"]
  pid_file = "/run/nginx.pid" # no nginx running: nothing to reload
  signal   = "HUP"
  verify {
    address     = "127.0.0.1:8443"
    server_name = "web1.example.internal"
  }
}

# Apache: the same, with its graceful restart (SIGUSR1).
service "apache2" {
  check    = ["sudo", "-n", "/usr/sbin/apache2ctl", "-t"]
  pid_file = "/var/run/apache2/apache2.pid"
  signal   = "USR1"
  verify {
    address     = "127.0.0.1:8444"
    server_name = "web1.example.internal"
  }
}

# The server certificates both servers present, EC and RSA. Keys are made
# here; Vault only signs CSRs. Only root (the servers' masters) and
# certkeeper read the keys.
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
  notify         = ["nginx", "apache2"]
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
  notify         = ["nginx", "apache2"]
}

# The CAs and CRLs the servers verify clients against: every usable issuer
# of pki_clients and pki_root, and a CRL for each.
trust_bundle "clients" {
  mounts   = ["pki_clients", "pki_root"]
  ca_file  = "/etc/ssl/certkeeper/clients-ca.pem"
  crl_file = "/etc/ssl/certkeeper/clients.crl.pem"
  notify   = ["nginx", "apache2"]
}

# A client certificate for a caller on this host (an application calling
# mTLS services). To let the application read its key, add its group:
#   group = "app" and key_mode = "0640" (certkeeper must be in that group).
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
