state_dir = "/var/lib/certkeeper"

vault {
  address = "https://127.0.0.1:8200"
  ca_cert = "/etc/certkeeper/vault-ca.pem"
  auth "approle" {
    role_id_file   = "/etc/certkeeper/role-id"
    secret_id_file = "/etc/certkeeper/secret-id"
  }
}

service "nginx" {
  pid_file = "/run/nginx.pid"
}

certificate "web" {
  mount                = "pki_int"
  role                 = "web"
  common_name          = "web.example.internal"
  cert_file            = "/tmp/web.crt"
  key_file             = "/var/lib/certkeeper/web.key"
  fullchain_file       = "/run/nginx.pid"
  pkcs12_file          = "/etc/certkeeper/role-id"
  pkcs12_password_file = "invalid-overwrites-inputs.hcl"
  template {
    source      = "templates/leaf.tmpl"
    destination = "invalid-overwrites-inputs.hcl"
  }
  template {
    contents    = "{{ with certificate }}{{ .Cert }}{{ end }}"
    destination = "templates/leaf.tmpl"
  }
}

certificate "api" {
  mount       = "pki_int"
  role        = "api"
  common_name = "api.example.internal"
  cert_file   = "/tmp/api.crt"
  key_file    = "/tmp/api.key"
  pkcs12_file = "/etc/certkeeper/../certkeeper/secret-id"
}

trust_bundle "clients" {
  mount    = "pki_int"
  ca_file  = "/etc/certkeeper/secret-id"
  crl_file = "/etc/certkeeper/vault-ca.pem"
}
