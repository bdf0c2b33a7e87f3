vault {
  address = "http://127.0.0.1:8200"
}

certificate "web" {
  mount       = "pki_int"
  role        = "web"
  common_name = "web1.example.internal"
  cert_file   = "/tmp/web.crt"
  key_file    = "/tmp/web.key"
}

trust_bundle "clients" {
  mount   = "pki_clients"
  ca_file = "/tmp/clients.pem"
}

telemetry {
  tls_client_trust_bundle = "clients"
  tls_client_names        = ["prometheus.example.internal", ""]
  textfile                = "/tmp/web.crt"
}
