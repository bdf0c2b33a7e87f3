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

telemetry {
  listen            = ""
  tls_certificate   = "web"
  tls_client_names  = ["prometheus.example.internal"]
  textfile_interval = "500ms"
}
