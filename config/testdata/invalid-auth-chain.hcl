vault {
  address = "https://127.0.0.1:8200"
  auth "cert" {
    certificate = "vault-id"
  }
  auth "kerberos" {
    role = "host"
  }
  auth "aws" {
    region       = "Frankfurt"
    header_value = "vault.example.internal"
  }
  auth "jwt" {
    role = "web"
  }
  auth "approle" {
    role_id_file   = "/etc/certkeeper/role-id"
    secret_id_file = "/etc/certkeeper/secret-id"
  }
  auth "aws" {
    role          = "team/web"
    imds_endpoint = "169.254.169.254"
    token_file    = "/etc/certkeeper/token"
  }
  auth "cert" {
    mount       = "cert-hosts"
    certificate = "vault-id"
  }
}

certificate "vault-id" {
  mount       = "pki_int"
  role        = "host"
  common_name = "host1.example.internal"
  cert_file   = "/tmp/id.crt"
  key_file    = "/tmp/id.key"
}
