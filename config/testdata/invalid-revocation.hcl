vault {
  address = "https://127.0.0.1:8200"
}

service "nginx" {
  pid_file = "/run/nginx.pid"
  verify {
    address            = "127.0.0.1:443"
    client_certificate = "caller"
  }
}

service "apache" {
  pid_file = "/run/apache2.pid"
  verify {
    address            = "127.0.0.1:444"
    client_certificate = "web"
  }
}

certificate "web" {
  mount            = "pki_int"
  role             = "web"
  common_name      = "web1.example.internal"
  cert_file        = "/tmp/web.crt"
  key_file         = "/tmp/web.key"
  notify           = ["nginx", "apache"]
  revoke_grace     = "10m"
  revocation_check = "never"
}

trust_bundle "clients" {
  mount   = "pki_int"
  ca_file = "/tmp/clients.pem"
  notify  = ["nginx"]
}
