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
  listen                  = "0.0.0.0:9847"
  web_config_file         = "web-config-tls.yml"
  tls_certificate         = "metrics"
  tls_client_trust_bundle = "scrapers"
}
