vault {
  address = "http://127.0.0.1:8200"
}

certificate "web" {
  mount       = "pki_int"
  role        = "web"
  common_name = "web1.example.internal"
  alt_names   = "web1.example.internal"
  key_bits    = "big"
  cert_file   = "/tmp/web.crt"
  key_file    = "/tmp/web.key"
}
