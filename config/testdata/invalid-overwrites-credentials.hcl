vault {
  address = "https://127.0.0.1:8200"
  ca_cert = "/etc/certkeeper/vault-ca.pem"
  auth "approle" {
    role_id_file   = "/etc/certkeeper/role-id"
    secret_id_file = "/etc/certkeeper/secret-id"
  }
}

certificate "web" {
  mount       = "pki_int"
  role        = "web"
  common_name = "web.example.internal"
  cert_file   = "/tmp/web.crt"
  key_file    = "/etc/certkeeper/secret-id"
  ca_file     = "/etc/certkeeper/vault-ca.pem"
}
