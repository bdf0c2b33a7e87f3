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

certificate "web" {
  mount       = "pki_int"
  role        = "web"
  common_name = "web2.example.internal"
  cert_file   = "/tmp/web2.crt"
  key_file    = "/tmp/web2.key"
}

certificate "api" {
  mount       = "pki_int"
  role        = "web"
  common_name = "api.example.internal"
  cert_file   = "/tmp/api.crt"
  key_file    = "/tmp/web.key"
}
