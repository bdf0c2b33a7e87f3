# /etc/certkeeper/certkeeper.hcl: installed by the certkeeper package as an
# example. Edit it for this host (or let config management write it), then:
#   certkeeper validate   # checks it, with file:line messages
#   certkeeper once       # gets every certificate now
#   systemctl enable --now certkeeper
#
# See `man certkeeper` and the README for every option.

vault {
  address = "https://vault.example.internal:8200"
  # ca_cert = "/etc/certkeeper/vault-ca.pem"   # default: system roots

  auth "approle" {
    role_id_file   = "/etc/certkeeper/role-id"
    secret_id_file = "/etc/certkeeper/secret-id"
  }
}

certificate "web" {
  mount          = "pki_int"
  role           = "web"
  common_name    = "web1.example.internal"
  alt_names      = ["web1.example.internal"]
  ttl            = "72h"
  cert_file      = "/etc/ssl/certkeeper/web.crt"
  key_file       = "/etc/ssl/certkeeper/web.key"
  fullchain_file = "/etc/ssl/certkeeper/web.fullchain.pem"
  ca_file        = "/etc/ssl/certkeeper/web.ca.pem"
  # group    = "www-data"   # let the web server's group read the key...
  # key_mode = "0640"       # ...with this mode
}
