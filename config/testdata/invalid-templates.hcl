vault { address = "https://vault.example.internal:8200" }

certificate "web" {
  mount                = "pki_int"
  role                 = "web"
  common_name          = "web.example.internal"
  cert_file            = "/tmp/web.crt"
  key_file             = "/tmp/web.key"
  pkcs12_password_file = "no-such-password-file"

  template {
    source      = "templates/bad.tmpl"
    destination = "/tmp/web.bad"
  }
  template {
    contents    = <<-EOT
      {{ with certificate }}
      {{ if false }}{{ secret "pki/issue/web" }}{{ end }}
      {{ .Cert }}{{ file "/etc/shadow" }}
      {{ end }}
    EOT
    destination = "/tmp/web.secret"
  }
  template {
    stock       = "haproxy"
    destination = "/tmp/web.pem"
    mode        = "0644"
  }
  template {
    stock       = "nginx"
    destination = "/tmp/web.nginx"
  }
  template {
    source      = "templates/missing.tmpl"
    contents    = "{{ certificate }}"
    destination = "/tmp/web.both"
  }
  template {
    contents    = "{{ with certificate }}{{ .Cert }}{{ end }}"
    destination = "/tmp/web.key"
  }
  template {
    contents    = "{{ with certificate }}\n{{ .Cert }"
    destination = "/tmp/web.unclosed"
  }
  template {
    stock       = "json"
    destination = "/tmp/web.json"
  }
}

certificate "api" {
  mount       = "pki_int"
  role        = "api"
  common_name = "api.example.internal"
  cert_file   = "/tmp/api.crt"
  key_file    = "/tmp/api.key"
  pkcs12_file = "/tmp/web.crt"
  template {
    stock       = "bundle"
    destination = "/tmp/web.json"
  }
}
