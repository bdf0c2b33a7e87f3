# Everything here but the first template is beyond certkeeper: the
# converter must say so, line by line, and still print a config that
# validates.
pid_file        = "/run/vault-agent.pid"
exit_after_auth = true

vault {
  address = "https://vault.example.internal:8200"
  ca_path = "/etc/ssl/vault-cas"
  retry {
    num_retries = 5
  }
}

auto_auth {
  method "kubernetes" {
    mount_path = "auth/k8s-prod"
    config = {
      role = "payments"
    }
  }

  sink "file" {
    config = {
      path = "/var/run/secrets/vault-token"
    }
  }
}

cache {
  use_auto_auth_token = true
}

listener "tcp" {
  address     = "127.0.0.1:8100"
  tls_disable = true
}

template_config {
  exit_on_retry_failure = true
}

# Translated: a certificate for the payments API, with a command.
template {
  destination = "/etc/payments/tls/payments.pem"
  contents    = "{{ with pkiCert \"pki_int/issue/payments\" \"common_name=payments.example.internal\" \"format=pem\" \"private_key_format=pkcs8\" \"exclude_cn_from_sans=true\" \"other_sans=1.2.3.4;UTF8:payments\" }}{{ .Cert }}{{ .Key }}{{ end }}"
  command     = "systemctl reload payments"
  backup      = true
  wait {
    min = "5s"
    max = "30s"
  }
}

# A KV secret: not a certificate.
template {
  destination = "/etc/payments/db.env"
  contents    = "{{ with secret \"kv/data/payments/db\" }}DB_PASSWORD={{ .Data.data.password }}{{ end }}"
}

# A common name computed when the template renders.
template {
  destination = "/etc/payments/tls/host.pem"
  contents    = "{{ with pkiCert \"pki_int/issue/payments\" (printf \"common_name=%s.example.internal\" (env \"HOSTNAME\")) }}{{ .Cert }}{{ end }}"
}

# Signing a CSR the template does not have.
template {
  destination = "/etc/payments/tls/signed.pem"
  contents    = "{{ with secret \"pki_int/sign/payments\" \"csr=@/etc/payments/req.csr\" }}{{ .Data.certificate }}{{ end }}"
}

# A certificate mixed with a KV secret in one file.
template {
  destination = "/etc/payments/bundle.txt"
  contents    = "{{ with pkiCert \"pki_int/issue/payments\" \"common_name=bundle.example.internal\" }}{{ .Cert }}{{ end }}{{ with secret \"kv/data/payments/db\" }}{{ .Data.data.user }}{{ end }}"
}

env_template "DB_PASSWORD" {
  contents = "{{ with secret \"kv/data/payments/db\" }}{{ .Data.data.password }}{{ end }}"
}

exec {
  command = ["/usr/local/bin/payments-worker"]
}

telemetry {
  disable_hostname = true
}
