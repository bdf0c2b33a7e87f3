{{- with secret "pki_int/issue/web-servers" "common_name=shop.example.internal" "alt_names=www.shop.example.internal,localhost" "ip_sans=127.0.0.1" "ttl=24h" -}}
{{ .Data.issuing_ca }}
{{- end }}
