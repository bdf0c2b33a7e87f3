vault {
  address = ["https://vault-a.example.internal:8200", "http://vault-b.example.internal:8200"]
  auth "cert" {
    certificate = "vault-identity"
  }
}

certificate "vault-identity" {
  mount       = "pki_int"
  role        = "host"
  common_name = "host1.example.internal"
  cert_file   = "/tmp/id.crt"
  key_file    = "/tmp/id.key"
}
