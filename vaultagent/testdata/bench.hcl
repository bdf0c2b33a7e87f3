# The Vault Agent configuration of test/bench (agentConfig in
# test/bench/tools.go) for three certificates, which
# TestAgentConfigIsTheConvertersTestdata keeps in step: AppRole, and one
# pkiCert template per certificate with certificate, CA and key in one
# file, the layout that lets pkiCert find its certificate after a restart.
vault {
  address = "https://vault.example.internal:8200"
}

auto_auth {
  method "approle" {
    config = {
      role_id_file_path                   = "/etc/vault-agent/role-id"
      secret_id_file_path                 = "/etc/vault-agent/secret-id"
      remove_secret_id_file_after_reading = false
    }
  }
}

template {
  destination = "/etc/bench/tls/c0.pem"
  contents    = "{{ with pkiCert \"pki_int/issue/bench-ec\" \"common_name=c0.example.internal\" \"ttl=24h\" }}{{ .Cert }}{{ .CA }}{{ .Key }}{{ end }}"
  perms       = "0600"
}

template {
  destination = "/etc/bench/tls/c1.pem"
  contents    = "{{ with pkiCert \"pki_int/issue/bench-ec\" \"common_name=c1.example.internal\" \"ttl=24h\" }}{{ .Cert }}{{ .CA }}{{ .Key }}{{ end }}"
  perms       = "0600"
}

template {
  destination = "/etc/bench/tls/c2.pem"
  contents    = "{{ with pkiCert \"pki_int/issue/bench-ec\" \"common_name=c2.example.internal\" \"ttl=24h\" }}{{ .Cert }}{{ .CA }}{{ .Key }}{{ end }}"
  perms       = "0600"
}
