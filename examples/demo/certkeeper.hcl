# The config `make demo` runs: a dev Vault on loopback (its address comes
# from VAULT_ADDR, which the demo sets) set up by examples/vault/setup-pki.sh
# as it is (pki_servers with role web, pki_clients with role client), the
# credentials of the script's AppRole web-host, and two certificates
# written under run/tls/.
#
# Relative paths are relative to this file.

state_dir = "run/state"

vault {
  # address: omitted, so VAULT_ADDR is used, as with the vault CLI.
  auth "approle" {
    role_id_file   = "run/role-id"
    secret_id_file = "run/secret-id"
  }
}

# A server certificate for nginx or Apache. The key is made here and never
# leaves this machine: Vault only sees a CSR. Its lifetime is short so you
# can watch certkeeper renew it (about a minute after it is issued).
certificate "web" {
  mount          = "pki_servers"
  role           = "web"
  common_name    = "web1.example.internal"
  alt_names      = ["web1.example.internal", "localhost"]
  ip_sans        = ["127.0.0.1"]
  ttl            = "2m"
  cert_file      = "run/tls/web.crt"
  key_file       = "run/tls/web.key"
  chain_file     = "run/tls/web.chain.pem"
  fullchain_file = "run/tls/web.fullchain.pem"
  ca_file        = "run/tls/web.ca.pem"
}

# A client certificate for a caller of the mTLS server, RSA this time.
certificate "client" {
  mount          = "pki_clients"
  role           = "client"
  common_name    = "client1.example.internal"
  key_type       = "rsa"
  ttl            = "24h"
  cert_file      = "run/tls/client.crt"
  key_file       = "run/tls/client.key"
  fullchain_file = "run/tls/client.fullchain.pem"
}

# Metrics for Prometheus, /healthz, /readyz and /v1/status (which
# `certkeeper status` reads). This is the default; listen = "" turns it off.
telemetry {
  listen = "127.0.0.1:9847"
}
