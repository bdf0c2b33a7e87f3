vault {
  address = "http://127.0.0.1:8200"
  auth "approle" {
    role_id_file = "/etc/certkeeper/role-id"
    token_file   = "/etc/certkeeper/token"
  }
}

certificate "web" {
  mount       = "pki_int"
  role        = "web"
  common_name = "web1.example.internal"
  key_type    = "rsa"
  key_bits    = 256
  cert_file   = "/tmp/web.crt"
  key_file    = "/tmp/web.key"
  owner       = "no-such-user-here"
}
