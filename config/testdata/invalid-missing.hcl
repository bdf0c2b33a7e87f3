vault {
  address = "http://127.0.0.1:8200"
}

certificate "web" {
  role        = "web"
  common_name = "web1.example.internal"
  key_file    = "/tmp/web.key"
}
