vault {
  address = "https://127.0.0.1:8200"
  auth "jwt" {
    mount      = "jwt-both"
    role       = "web"
    token_file = "/var/run/secrets/token"
    metadata   = "gcp"
  }
  auth "jwt" {
    mount    = "jwt-gcp"
    role     = "web"
    metadata = "gcp"
    resource = "https://vault.example.internal"
  }
  auth "jwt" {
    mount        = "jwt-azure"
    role         = "web"
    metadata     = "azure"
    metadata_url = "http://169.254.169.254/metadata?api-version=1"
  }
  auth "jwt" {
    mount    = "jwt-aws"
    role     = "web"
    metadata = "aws"
  }
  auth "jwt" {
    mount      = "jwt-file"
    role       = "web"
    token_file = "/var/run/secrets/token"
    audience   = "vault"
    region     = "us-east-1"
  }
}

certificate "web" {
  mount       = "pki_int"
  role        = "web"
  common_name = "web.example.internal"
  cert_file   = "/tmp/web.crt"
  key_file    = "/tmp/web.key"
}
