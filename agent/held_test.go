package agent

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"log/slog"
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/internal/statedir"
	"github.com/certkeeper/certkeeper/vault"
)

// TestFleetSpreadsRenewalThroughTheAgent: 200 hosts configure the same
// certificate name and get it issued in the same second. The renewal
// points the agents choose (not ones a test computes with renewal.At)
// must be spread evenly over the jitter window, and one host must find
// the same point again after a restart.
func TestFleetSpreadsRenewalThroughTheAgent(t *testing.T) {
	const hosts = 200
	fv := newFakeVault(t)
	issuedAt := time.Now().Truncate(time.Second)
	fv.clock = func() time.Time { return issuedAt }
	// Vault's serials are random; these are too, but seeded, so the test
	// gives the same answer on every run.
	serials := rand.New(rand.NewPCG(13, 13))
	fv.serial = func() *big.Int { return new(big.Int).SetUint64(serials.Uint64() >> 2) }
	now := func() time.Time { return issuedAt }

	var positions []float64
	var renewAts []time.Time
	for i := range hosts {
		cfg := testConfig(t, "web")
		c := cfg.Certificates[0]
		res, err := New(Options{Config: cfg, Issuer: fv, Now: now}).ensure(t.Context(), c, false)
		if err != nil {
			t.Fatal(err)
		}
		leaf := res.Leaf.Leaf
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		latest := leaf.NotBefore.Add(time.Duration(c.RenewFraction * float64(life)))
		window := time.Duration(c.RenewJitter * float64(life))
		// 0 is the latest point of the window (renew_fraction), 1 the
		// earliest (renew_fraction - renew_jitter).
		u := float64(latest.Sub(res.RenewAt)) / float64(window)
		if u < 0 || u > 1 {
			t.Fatalf("host %d renews at %v, outside the window [%v, %v]", i, res.RenewAt, latest.Add(-window), latest)
		}
		positions = append(positions, u)
		renewAts = append(renewAts, res.RenewAt)

		if i < 5 {
			again, err := New(Options{Config: cfg, Issuer: fv, Now: now}).ensure(t.Context(), c, false)
			if err != nil || again.Action != Kept || !again.RenewAt.Equal(res.RenewAt) {
				t.Errorf("host %d after a restart: %v, %v; want kept with the same renewal point %v", i, again, err, res.RenewAt)
			}
		}
	}
	slices.SortFunc(renewAts, func(a, b time.Time) int { return a.Compare(b) })
	if distinct := len(slices.CompactFunc(renewAts, time.Time.Equal)); distinct < hosts*9/10 {
		t.Errorf("%d hosts chose only %d distinct renewal points: the fleet renews together", hosts, distinct)
	}
	// Kolmogorov-Smirnov distance to the uniform distribution: 0.115 is
	// the 1% critical value for 200 samples. All hosts at one point give
	// about 1.
	slices.Sort(positions)
	var d float64
	for i, u := range positions {
		d = max(d, math.Abs(float64(i+1)/hosts-u), math.Abs(u-float64(i)/hosts))
	}
	if d > 0.115 {
		t.Errorf("renewal points are not uniform over the jitter window: KS distance %.3f (positions from %.3f to %.3f)", d, positions[0], positions[hosts-1])
	}
	t.Logf("%d hosts, KS distance %.3f from uniform, positions %.3f..%.3f of the window", hosts, d, positions[0], positions[hosts-1])
}

// TestRenewalFollowsTheCertificateNotTheTTL: the config asks for 72h, the
// role clamps it to 2 minutes. The renewal point must come from the
// certificate's NotBefore/NotAfter (within a minute or two), not from the
// 72h asked, and the clamp must be warned about. The integration test
// TestRoleClampsTTL proves the same against Vault in minutes; this one
// fails in milliseconds.
func TestRenewalFollowsTheCertificateNotTheTTL(t *testing.T) {
	cfg := testConfig(t, "web")
	cfg.Certificates[0].TTL = 72 * time.Hour
	fv := newFakeVault(t)
	fv.life = 2 * time.Minute
	var logs bytes.Buffer
	a := New(Options{Config: cfg, Issuer: fv, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	c := cfg.Certificates[0]
	res, err := a.ensure(t.Context(), c, false)
	if err != nil {
		t.Fatal(err)
	}
	leaf := res.Leaf.Leaf
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	earliest := leaf.NotBefore.Add(time.Duration((c.RenewFraction - c.RenewJitter) * float64(life)))
	latest := leaf.NotBefore.Add(time.Duration(c.RenewFraction * float64(life)))
	if res.RenewAt.Before(earliest) || res.RenewAt.After(latest) {
		t.Errorf("renews at %v; a %v certificate (NotBefore %v) must renew in [%v, %v]", res.RenewAt, life, leaf.NotBefore, earliest, latest)
	}
	if !strings.Contains(logs.String(), "vault issued a shorter lifetime than asked") {
		t.Errorf("no warning about the clamped TTL in:\n%s", logs.String())
	}
	if req := fv.lastRequest(); req.TTL != 72*time.Hour {
		t.Errorf("asked Vault for a TTL of %v, want the configured 72h", req.TTL)
	}
	// A restart schedules from the certificate on disk the same way.
	again, err := New(Options{Config: cfg, Issuer: fv}).ensure(t.Context(), c, false)
	if err != nil || again.Action != Kept || !again.RenewAt.Equal(res.RenewAt) {
		t.Errorf("after a restart: %+v, %v; want kept, renewing at %v", again, err, res.RenewAt)
	}
}

// TestMountOrRoleChangeMakesStale: the certificate does not say which
// mount and role issued it; the record does. A config that now names
// another mount or role must get a new certificate from there, both in
// the running agent and after a restart.
func TestMountOrRoleChangeMakesStale(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(*config.Certificate)
		want string
	}{
		{"role", func(c *config.Certificate) { c.Role = "web-v2" }, "certificate came from pki_int/web, config now asks pki_int/web-v2"},
		{"mount", func(c *config.Certificate) { c.Mount = "pki_eu" }, "certificate came from pki_int/web, config now asks pki_eu/web"},
	} {
		for _, restart := range []bool{false, true} {
			name := tt.name + map[bool]string{false: " in the running agent", true: " after a restart"}[restart]
			t.Run(name, func(t *testing.T) {
				cfg := testConfig(t, "web")
				fv := newFakeVault(t)
				a := New(Options{Config: cfg, Issuer: fv})
				if _, err := a.ensure(t.Context(), cfg.Certificates[0], false); err != nil {
					t.Fatal(err)
				}
				tt.edit(&cfg.Certificates[0])
				c := cfg.Certificates[0]
				if restart {
					a = New(Options{Config: cfg, Issuer: fv})
				}
				res, err := a.ensure(t.Context(), c, false)
				if err != nil {
					t.Fatal(err)
				}
				if res.Action != Issued || !strings.Contains(res.Reason, tt.want) {
					t.Fatalf("after the %s changed: %s (%s); want a new certificate because %q", tt.name, res.Action, res.Reason, tt.want)
				}
				if req := fv.lastRequest(); req.Mount != c.Mount || req.Role != c.Role {
					t.Errorf("asked %s/%s, want %s/%s", req.Mount, req.Role, c.Mount, c.Role)
				}
				// And the new record says where it came from: the next pass keeps it.
				res, err = New(Options{Config: cfg, Issuer: fv}).ensure(t.Context(), c, false)
				if err != nil || res.Action != Kept {
					t.Errorf("the pass after: %+v, %v; want kept", res, err)
				}
			})
		}
	}
}

// TestKeyMismatch: a key that does not belong to the certificate is never
// written or kept, whoever made it: Vault in issue mode answering with
// another key than the certificate's, or someone replacing the key file
// on disk. (Sign mode, where the certificate carries another public key
// than the CSR's, is in TestRejectedCertificateKeepsOldFiles.) The
// integration test TestBadCertificatesRejected proves it against Vault
// in minutes; this one fails in milliseconds.
func TestKeyMismatch(t *testing.T) {
	t.Run("issue mode: vault answers with another key", func(t *testing.T) {
		cfg := testConfig(t, "web")
		cfg.Certificates[0].IssueMode = config.ModeIssue
		c := cfg.Certificates[0]
		fv := newFakeVault(t)
		a := New(Options{Config: cfg, Issuer: fv})
		if _, err := a.ensure(t.Context(), c, false); err != nil {
			t.Fatal(err)
		}
		before := readAll(t, c.Files.Key, c.Files.Cert, c.Files.Fullchain)
		fv.answer = func(is *vault.Issued) {
			other, _ := pki.GenerateKey("ec", 256)
			pemKey, _ := pki.MarshalKey(other)
			is.PrivateKey = string(pemKey)
		}
		_, err := a.ensure(t.Context(), c, true)
		var rej *RejectedError
		if !errors.As(err, &rej) || !strings.Contains(err.Error(), "does not match the private key") {
			t.Fatalf("err = %v, want a rejection for the key mismatch", err)
		}
		if after := readAll(t, c.Files.Key, c.Files.Cert, c.Files.Fullchain); after != before {
			t.Error("files changed although the key did not match")
		}
	})
	t.Run("key file replaced on disk", func(t *testing.T) {
		cfg := testConfig(t, "web")
		c := cfg.Certificates[0]
		fv := newFakeVault(t)
		if _, err := New(Options{Config: cfg, Issuer: fv}).ensure(t.Context(), c, false); err != nil {
			t.Fatal(err)
		}
		other, _ := pki.GenerateKey("ec", 256)
		pemKey, _ := pki.MarshalKey(other)
		if err := os.WriteFile(c.Files.Key, pemKey, 0o600); err != nil {
			t.Fatal(err)
		}
		res, err := New(Options{Config: cfg, Issuer: fv}).ensure(t.Context(), c, false)
		if err != nil {
			t.Fatal(err)
		}
		if res.Action != Issued || !strings.Contains(res.Reason, "does not match the private key") {
			t.Errorf("a restart found a foreign key: %s (%s); want a new certificate because the key does not match", res.Action, res.Reason)
		}
		assertKeyMatches(t, c)
	})
}

func assertKeyMatches(t *testing.T, c config.Certificate) {
	t.Helper()
	keyPEM, _ := os.ReadFile(c.Files.Key)
	certPEM, _ := os.ReadFile(c.Files.Cert)
	key, err := pki.ParseKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCertificates(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.KeyMatches(certs[0], key); err != nil {
		t.Errorf("on disk: %v", err)
	}
}

// TestURISANsThroughTheAgent: uri_sans from the config reach Vault and
// the check; a certificate without them is rejected.
func TestURISANsThroughTheAgent(t *testing.T) {
	const id = "spiffe://example.internal/web"
	cfg := testConfig(t, "web")
	cfg.Certificates[0].URISANs = []string{id}
	c := cfg.Certificates[0]
	fv := newFakeVault(t)
	a := New(Options{Config: cfg, Issuer: fv})
	res, err := a.ensure(t.Context(), c, false)
	if err != nil {
		t.Fatal(err)
	}
	if uris := res.Leaf.Leaf.URIs; len(uris) != 1 || uris[0].String() != id {
		t.Errorf("certificate URIs %v, want [%s]", uris, id)
	}
	fv.tamper = func(_ vault.CertRequest, tmpl *x509.Certificate, _ *crypto.PublicKey) { tmpl.URIs = nil }
	if _, err := a.ensure(t.Context(), c, true); err == nil || !strings.Contains(err.Error(), "URI SANs are [], want ["+id+"]") {
		t.Errorf("a certificate without the URI SAN: err = %v, want a rejection", err)
	}
}

// TestRecordOfAnotherUserIsNotTrusted: a record in state_dir that is not
// the running user's own (left by root before the owner took over, or
// planted) is never used: the pass says whose it is, gets a new
// certificate, and the record written in its place is the running
// user's. A group-writable one is refused the same way.
func TestRecordOfAnotherUserIsNotTrusted(t *testing.T) {
	cases := map[string]func(path string) string{
		"group-writable": func(path string) string {
			os.Chmod(path, 0o660)
			return "writable by group or others (mode 0660)"
		},
	}
	if os.Geteuid() == 0 {
		cases["another user's"] = func(path string) string {
			os.Chown(path, 65534, 65534)
			return "owned by uid 65534"
		}
	}
	for name, spoil := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t, "web")
			c := cfg.Certificates[0]
			fv := newFakeVault(t)
			if _, err := New(Options{Config: cfg, Issuer: fv}).ensure(t.Context(), c, false); err != nil {
				t.Fatal(err)
			}
			record := statedir.Dir(cfg.StateDir).CertificateRecord(c.Name)
			want := spoil(record)
			a := New(Options{Config: cfg, Issuer: fv})
			if st := DiskStatus(cfg, time.Now())[0]; !strings.Contains(st.LastError, "refusing to read "+record) || !strings.Contains(st.LastError, want) {
				t.Errorf("status of the disk: %+v, want the refusal saying %q", st, want)
			}
			res, err := a.ensure(t.Context(), c, false)
			if err != nil {
				t.Fatal(err)
			}
			if res.Action != Issued || !strings.Contains(res.Reason, want) {
				t.Errorf("pass: %s (%s), want a new certificate because the record was refused (%q)", res.Action, res.Reason, want)
			}
			if n := fv.count("web.example.internal"); n != 2 {
				t.Errorf("vault asked %d times, want 2", n)
			}
			info, err := os.Stat(record)
			if err != nil {
				t.Fatal(err)
			}
			if st := info.Sys().(*syscall.Stat_t); int(st.Uid) != os.Geteuid() || info.Mode().Perm() != 0o600 {
				t.Errorf("record now owned by %d with mode %o, want the running user's, 600", st.Uid, info.Mode().Perm())
			}
		})
	}
}
