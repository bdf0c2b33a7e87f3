vault {
  address = "vault.example.internal"
  timeout = "soon"
}

certificate "web" {
  mount          = "pki_int"
  role           = "web"
  common_name    = "web1.example.internal"
  ip_sans        = ["not-an-ip"]
  key_type       = "dsa"
  issue_mode     = "fetch"
  renew_fraction = 1.5
  ttl            = "-3h"
  cert_file      = "/tmp/web.crt"
  key_file       = "/tmp/web.key"
  key_mode       = "0644"
  cert_mode      = "rw-r--r--"
}
