# consul-template's documented way to split a pkiCert into files: the
# destination keeps certificate, CA and key (pkiCert reads it back to know
# whether to renew), and writeToFile writes the key alone and a file with
# the CA followed by the certificate. Values are ours.
vault {
  address = "https://vault.example.internal:8200"
  ca_cert = "/etc/vault-agent/vault-ca.pem"
}

auto_auth {
  method {
    type = "approle"
    config = {
      role_id_file_path   = "/etc/vault-agent/role-id"
      secret_id_file_path = "/etc/vault-agent/secret-id"
    }
  }
}

template {
  destination = "/etc/mail/tls/cache.pem"
  perms       = 0600
  contents    = <<EOT
{{- with pkiCert "pki_int/issue/mail" "common_name=mx1.example.internal" "ttl=48h" -}}
{{ .Cert }}{{ .CA }}{{ .Key }}
{{ .Key | writeToFile "/etc/mail/tls/mx1.key" "" "" "0400" }}
{{ .CA | writeToFile "/etc/mail/tls/mx1.pem" "" "" "0644" }}
{{ .Cert | writeToFile "/etc/mail/tls/mx1.pem" "" "" "0644" "append" }}
{{- end -}}
EOT
  exec {
    command = ["/etc/mail/reload.sh", "--graceful"]
    timeout = "10s"
  }
}
