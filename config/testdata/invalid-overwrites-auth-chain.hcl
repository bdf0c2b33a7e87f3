vault {
  address = "http://127.0.0.1:8200"
  auth "aws" {
    role = "web-host"
  }
  auth "jwt" {
    role       = "web-host"
    token_file = "/var/run/secrets/vault/token"
  }
  auth "cert" {
    certificate = "vault-id"
  }
}

certificate "vault-id" {
  mount       = "pki_int"
  role        = "host"
  common_name = "host1.example.internal"
  cert_file   = "/etc/certkeeper/id.crt"
  key_file    = "/etc/certkeeper/id.key"
}

certificate "web" {
  mount       = "pki_int"
  role        = "web"
  common_name = "web.example.internal"
  cert_file   = "/var/run/secrets/vault/token"
  key_file    = "/etc/certkeeper/id.key"
}
