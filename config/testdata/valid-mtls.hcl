state_dir = "/var/lib/certkeeper"

vault {
  address = "https://vault.example.internal:8200"
}

service "nginx" {
  check    = ["nginx", "-t", "-q"]
  reload   = ["nginx", "-s", "reload"]
  pid_file = "/run/nginx.pid"
  timeout  = "20s"
  settle   = "500ms"
  verify {
    address            = "127.0.0.1:8443"
    timeout            = "3s"
    client_certificate = "client"
  }
}

service "apache" {
  pid_file = "run/apache2.pid"
  signal   = "sigusr1"
  verify {
    address     = "[::1]:443"
    server_name = "web1.example.internal"
  }
}

certificate "web" {
  mount       = "pki_int"
  role        = "web"
  common_name = "web1.example.internal"
  cert_file   = "/etc/nginx/tls/web.crt"
  key_file    = "/etc/nginx/tls/web.key"
  notify      = ["nginx", "apache", "nginx"]

  revoke_superseded = true
  revoke_grace      = "10m"
}

certificate "client" {
  mount       = "pki_int"
  role        = "client"
  common_name = "client.example.internal"
  cert_file   = "/etc/caller/client.crt"
  key_file    = "/etc/caller/client.key"

  revocation_check = "30s"
}

trust_bundle "clients" {
  mounts   = ["/pki_int/", "pki"]
  ca_file  = "/etc/nginx/tls/clients-ca.pem"
  crl_file = "/etc/nginx/tls/clients.crl.pem"
  notify   = ["nginx"]
  group    = "root"
  mode     = "0640"
}

trust_bundle "one" {
  mount       = "pki_client"
  ca_file     = "/etc/nginx/tls/one-ca.pem"
  crl_refresh = "2m"
}
