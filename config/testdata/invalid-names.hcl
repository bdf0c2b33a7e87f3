vault {
  address = "http://127.0.0.1:8200"
}

certificate ".web.json.certkeeper-tmp-1" {
  mount       = "pki_int"
  role        = "web"
  common_name = "web.example.internal"
  cert_file   = "/tmp/web.crt"
  key_file    = "/tmp/web.key"
}

certificate ".." {
  mount       = "pki_int"
  role        = "web"
  common_name = "up.example.internal"
  cert_file   = "/tmp/up.crt"
  key_file    = "/tmp/up.key"
}

certificate "services" {
  mount       = "pki_int"
  role        = "web"
  common_name = "services.example.internal"
  cert_file   = "/tmp/services.crt"
  key_file    = "/tmp/services.key"
}

trust_bundle ".clients" {
  mount   = "pki_int"
  ca_file = "/tmp/clients-ca.pem"
}

trust_bundle "status" {
  mount   = "pki_int"
  ca_file = "/tmp/status-ca.pem"
}
