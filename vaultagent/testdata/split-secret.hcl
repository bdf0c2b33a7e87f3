# The layout of HashiCorp's guides for Vault Agent and PKI: one template
# file per output (certificate, key, issuing CA), each with the same
# secret call, so the agent makes one request and the three files hold one
# certificate. Values are ours.
pid_file = "/run/vault-agent/agent.pid"

vault {
  address = "https://vault.example.internal:8200"
  ca_cert = "/etc/vault-agent/vault-ca.pem"
}

auto_auth {
  method "approle" {
    mount_path = "auth/approle"
    config = {
      role_id_file_path   = "/etc/vault-agent/role-id"
      secret_id_file_path = "/etc/vault-agent/secret-id"
      remove_secret_id_file_after_reading = false
    }
  }

  sink "file" {
    config = {
      path = "/etc/vault-agent/token"
    }
  }
}

template {
  source      = "split-secret/shop-cert.tpl"
  destination = "/etc/shop/tls/shop.crt"
  perms       = "0644"
  command     = "/etc/shop/reload.sh"
}

# No perms, as in the guides: Vault Agent writes the key 0644.
template {
  source      = "split-secret/shop-key.tpl"
  destination = "/etc/shop/tls/shop.key"
  command     = "/etc/shop/reload.sh"
}

template {
  source      = "split-secret/shop-ca.tpl"
  destination = "/etc/shop/tls/issuing-ca.pem"
}
