vault { address = "https://vault.example.internal:8200" }

certificate "web" {
  mount       = "pki_int"
  role        = "web"
  common_name = "web.example.internal"
  cert_file   = "/tmp/web.crt"
  key_file    = "/tmp/web.key"

  template {
    contents    = "{{ with certificate }}{{ .Key | base64Encode }}{{ end }}"
    destination = "/tmp/web.key.b64"
    mode        = "0644"
  }
  template {
    contents    = "{{ certificate | toJSON | sprig_b64enc }}"
    destination = "/tmp/web.json.b64"
    mode        = "0604"
  }
  template {
    contents    = "{{ with certificate }}{{ .Cert | base64Encode }}{{ end }}"
    destination = "/tmp/web.crt.b64"
    mode        = "0644"
  }
}
