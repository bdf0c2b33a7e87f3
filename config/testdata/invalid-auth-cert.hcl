vault {
  address = "https://127.0.0.1:8200"
  auth "cert" {
    certificate       = "vault-id"
    secret_id_wrapped = true
  }
}

certificate "web" {
  mount       = "pki_int"
  role        = "web"
  common_name = "web.example.internal"
  cert_file   = "/tmp/web.crt"
  key_file    = "/tmp/web.key"
}
