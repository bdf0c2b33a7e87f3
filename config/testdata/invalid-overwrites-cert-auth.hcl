vault {
  address = "https://127.0.0.1:8200"
  auth "cert" {
    certificate = "vault-id"
  }
}

certificate "vault-id" {
  mount       = "pki_int"
  role        = "client"
  common_name = "host-1.example.internal"
  cert_file   = "/etc/certkeeper/vault-id.crt"
  key_file    = "/etc/certkeeper/vault-id.key"
  chain_file  = "/etc/certkeeper/vault-id.chain.pem"
}

certificate "web" {
  mount       = "pki_int"
  role        = "web"
  common_name = "web.example.internal"
  cert_file   = "/tmp/web.crt"
  key_file    = "/tmp/web.key"
  template {
    stock       = "bundle"
    destination = "/etc/certkeeper/vault-id.key"
  }
}

trust_bundle "clients" {
  mount   = "pki_int"
  ca_file = "/etc/certkeeper/vault-id.chain.pem"
}
