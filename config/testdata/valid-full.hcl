state_dir = "/var/lib/certkeeper"

vault {
  address = "https://vault.example.internal:8200"
  ca_cert = "/etc/certkeeper/vault-ca.pem"
  auth "approle" {
    role_id_file   = "/etc/certkeeper/role-id"
    secret_id_file = "/etc/certkeeper/secret-id"
  }
}

certificate "web" {
  mount          = "pki_int"
  role           = "web"
  common_name    = "web1.example.internal"
  alt_names      = ["web1.example.internal", "localhost"]
  ip_sans        = ["127.0.0.1"]
  ttl            = "72h"
  key_type       = "ec"
  key_bits       = 384
  issue_mode     = "sign"
  renew_fraction = 0.66
  renew_jitter   = 0.10
  renew_before   = "1d"
  cert_file      = "/etc/nginx/tls/web.crt"
  key_file       = "/etc/nginx/tls/web.key"
  chain_file     = "/etc/nginx/tls/web.chain.pem"
  fullchain_file = "/etc/nginx/tls/web.fullchain.pem"
  ca_file        = "/etc/nginx/tls/web.ca.pem"
  owner          = "root"
  group          = "root"
  key_mode       = "0640"
  cert_mode      = "0644"
}

certificate "client" {
  mount       = "pki_int"
  role        = "client"
  common_name = "client.example.internal"
  cert_file   = "tls/client.crt"
  key_file    = "tls/client.key"
}
