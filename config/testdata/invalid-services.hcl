vault {
  address = "http://127.0.0.1:8200"
}

service "nginx" {
  check  = []
  reload = ["nginx", "-s", "reload"]
  signal = "HUP"
}

service "apache" {
  signal = "USR9"
  verify {
    address = "localhost"
  }
}

service "nothing" {
  settle = "soon"
}

service "nginx" {
  pid_file = "/run/nginx.pid"
}

certificate "web" {
  mount       = "pki_int"
  role        = "web"
  common_name = "web1.example.internal"
  cert_file   = "/tmp/web.crt"
  key_file    = "/tmp/web.key"
  notify      = ["nginx", "ngnix"]
}

trust_bundle "clients" {
  mount       = "pki_int"
  mounts      = ["pki_int", "pki"]
  ca_file     = "/tmp/web.crt"
  crl_file    = "/tmp/web.crt"
  notify      = ["apache2"]
  crl_refresh = "0s"
}

trust_bundle "nomount" {
  ca_file = "/tmp/clients.pem"
}

trust_bundle "clients" {
  mount   = "pki"
  ca_file = "/tmp/other.pem"
}
