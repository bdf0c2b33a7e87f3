package config_test

import (
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
)

func TestServicesAndTrustBundles(t *testing.T) {
	cfg, err := config.Load("testdata/valid-mtls.hcl", withTemplates)
	if err != nil {
		t.Fatal(err)
	}
	nginx, ok := cfg.Service("nginx")
	if !ok {
		t.Fatal("service nginx missing")
	}
	if !slices.Equal(nginx.Reload, []string{"nginx", "-s", "reload"}) || nginx.PIDFile != "/run/nginx.pid" || nginx.Signal != 0 {
		t.Errorf("nginx reload decoded wrong: %+v", nginx)
	}
	if nginx.Timeout != 20*time.Second || nginx.Settle != 500*time.Millisecond {
		t.Errorf("nginx timeout %v settle %v", nginx.Timeout, nginx.Settle)
	}
	// An IP address is no server name: no SNI unless asked for.
	if v := nginx.Verify; v == nil || v.Address != "127.0.0.1:8443" || v.ServerName != "" || v.Timeout != 3*time.Second || v.ClientCertificate != "client" {
		t.Errorf("nginx verify = %+v", nginx.Verify)
	}
	apache, _ := cfg.Service("apache")
	abs, _ := filepath.Abs("testdata/run/apache2.pid")
	if apache.Signal != syscall.SIGUSR1 || apache.SignalName != "USR1" || apache.PIDFile != abs {
		t.Errorf("apache signal decoded wrong: %+v", apache)
	}
	if apache.Timeout != config.DefaultServiceTimeout || apache.Settle != config.DefaultSettle || apache.Verify.Timeout != config.DefaultVerifyTimeout {
		t.Errorf("apache defaults: %+v %+v", apache, apache.Verify)
	}
	if apache.Verify.ServerName != "web1.example.internal" || apache.Verify.ClientCertificate != "" {
		t.Errorf("apache server_name = %q", apache.Verify.ServerName)
	}

	web, _ := cfg.Certificate("web")
	if !slices.Equal(web.Notify, []string{"nginx", "apache"}) {
		t.Errorf("web notify = %v, want nginx and apache once each", web.Notify)
	}
	if client, _ := cfg.Certificate("client"); client.Notify != nil {
		t.Errorf("client notify = %v, want none", client.Notify)
	}
	if !web.RevokeSuperseded || web.RevokeGrace != 10*time.Minute || web.RevocationCheck != config.DefaultRevocationCheck {
		t.Errorf("web revocation settings = %v %v %v", web.RevokeSuperseded, web.RevokeGrace, web.RevocationCheck)
	}
	if client, _ := cfg.Certificate("client"); client.RevokeSuperseded || client.RevokeGrace != config.DefaultRevokeGrace || client.RevocationCheck != 30*time.Second {
		t.Errorf("client revocation settings = %v %v %v", client.RevokeSuperseded, client.RevokeGrace, client.RevocationCheck)
	}
	if got := cfg.CertificatesNotifying("apache"); len(got) != 1 || got[0].Name != "web" {
		t.Errorf("certificates notifying apache: %v", got)
	}

	if len(cfg.TrustBundles) != 2 {
		t.Fatalf("%d trust bundles, want 2", len(cfg.TrustBundles))
	}
	clients, one := cfg.TrustBundles[0], cfg.TrustBundles[1]
	if !slices.Equal(clients.Mounts, []string{"pki_int", "pki"}) || clients.CRLFile != "/etc/nginx/tls/clients.crl.pem" {
		t.Errorf("clients = %+v", clients)
	}
	if clients.Mode != 0o640 || clients.GID != 0 || clients.UID != -1 || clients.CRLRefresh != config.DefaultCRLRefresh {
		t.Errorf("clients ownership/refresh = %+v", clients)
	}
	if !slices.Equal(clients.Notify, []string{"nginx"}) {
		t.Errorf("clients notify = %v", clients.Notify)
	}
	if !slices.Equal(one.Mounts, []string{"pki_client"}) || one.Mode != config.DefaultBundleMode || one.CRLRefresh != 2*time.Minute || one.CRLFile != "" {
		t.Errorf("one = %+v", one)
	}
}

// TestExamplesLoad: the shipped examples stay valid configs (test/e2e
// runs them against real servers; this catches a broken one without).
func TestExamplesLoad(t *testing.T) {
	for _, ex := range []string{"nginx", "apache"} {
		cfg, err := config.Load(filepath.Join("..", "examples", ex, "certkeeper.hcl"), withTemplates)
		if err != nil {
			t.Errorf("examples/%s/certkeeper.hcl: %v", ex, err)
			continue
		}
		if len(cfg.Services) != 1 || len(cfg.TrustBundles) != 1 || len(cfg.CertificatesNotifying(cfg.Services[0].Name)) != 2 {
			t.Errorf("examples/%s: %d services, %d trust bundles", ex, len(cfg.Services), len(cfg.TrustBundles))
		}
	}
}
