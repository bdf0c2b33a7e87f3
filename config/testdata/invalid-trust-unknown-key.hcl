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
  mounts   = ["pki_int", "pki"]
  ca_file  = "/tmp/clients.pem"
  crl      = "/tmp/clients.crl"
}

service "nginx" {
  reload = ["nginx", "-s", "reload"]
  verify {
    address = "127.0.0.1:8443"
    sni     = "web1.example.internal"
  }
}
