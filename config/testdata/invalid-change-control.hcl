vault {
  address = "http://127.0.0.1:8200"
}

renew_window = ["Mon-Fri 02:00-05:00", "any"]
ca_soak      = "a day"
issuer_check = "0s"

service "nginx" {
  pid_file            = "/run/nginx.pid"
  min_reload_interval = "1 minute"
}

certificate "web" {
  mount        = "pki_int"
  role         = "web"
  common_name  = "web1.example.internal"
  cert_file    = "/tmp/web.crt"
  key_file     = "/tmp/web.key"
  renew_window = ["Moon-Fri 02:00-05:00", "Mon 02:00-02:00", "0 2 * * 1-5 2027 for 3h", "0 2 31 2 * for 1h", "02:00-05:00 Mars/Olympus"]
}

certificate "api" {
  mount        = "pki_int"
  role         = "web"
  common_name  = "api.example.internal"
  cert_file    = "/tmp/api.crt"
  key_file     = "/tmp/api.key"
  renew_window = 3
}
