//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/cloudtest"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// The identities the stand-ins give the host, and what
// examples/vault/setup-auth.sh binds Vault's roles to.
const (
	awsAccount   = "123456789012"
	awsRole      = "web-host"
	awsServerID  = "vault.example.internal"
	gcpProject   = "proj-a"
	gcpAudience  = "vault/certkeeper"
	azureTenant  = "tenant-1"
	azureSub     = "sub-1"
	azureRes     = "https://vault.example.internal"
	jwtAudience  = "certkeeper"
	jwtIssuer    = "https://issuer.example.internal"
	hostCN       = "host1.example.internal"
	authTokenTTL = "20s"
)

var instanceCreds = cloudtest.AWSCredentials{
	AccessKeyID:     "ASIAINSTANCEPROFILE01",
	SecretAccessKey: "instance-profile-secret-key/never-printed",
	SessionToken:    "instance-profile-session-token-never-printed",
}

// cloudEnv is a real Vault (with TLS, for cert auth) set up by the two
// example scripts, unchanged: setup-pki.sh (CAs, the web host's policy, an
// AppRole) and setup-auth.sh (cert auth, aws against the STS stand-in, jwt
// for GCP, Azure and a plain OIDC issuer, all with the same policy), with
// a file audit device counting logins; and the clouds' stand-ins.
type cloudEnv struct {
	t     *testing.T
	vault *vaulttest.Server
	dir   string
	audit string

	imds  *cloudtest.IMDS
	sts   *cloudtest.STS
	iss   *cloudtest.Issuer
	gcp   *cloudtest.Metadata
	azure *cloudtest.Metadata

	roleIDFile, secretIDFile string
}

func newCloudEnv(t *testing.T, extraScriptEnv ...string) *cloudEnv {
	t.Helper()
	v := vaulttest.New(t, vaulttest.Options{TLS: true})
	e := &cloudEnv{t: t, vault: v, dir: t.TempDir()}
	roleID, secretID := v.SetupScript(t, filepath.Join(e.dir, "pki"))
	e.roleIDFile, e.secretIDFile = vaulttest.WriteCreds(t, e.dir, roleID, secretID)
	e.imds = cloudtest.NewIMDS(t, awsRole, instanceCreds)
	e.sts = cloudtest.NewSTS(t, awsAccount, awsServerID)
	e.sts.Allow(instanceCreds, awsRole)
	e.iss = cloudtest.NewIssuer(t)
	e.gcp = cloudtest.NewGCPMetadata(t, e.iss, cloudtest.GCPInstance{ProjectID: gcpProject, Zone: "europe-west1-b",
		InstanceName: "web-1", ServiceAccount: "web-host@proj-a.iam.gserviceaccount.com"})
	e.azure = cloudtest.NewAzureMetadata(t, e.iss, cloudtest.AzureIdentity{TenantID: azureTenant, ObjectID: "oid-web-1", ClientID: "app-web-1",
		ResourceID: "/subscriptions/sub-1/resourcegroups/rg-web/providers/Microsoft.Compute/virtualMachines/web-1"})
	v.SetupAuthScript(t, filepath.Join(e.dir, "pki"), append([]string{
		"AWS_ACCOUNT=" + awsAccount, "AWS_ROLE_NAME=" + awsRole, "AWS_SERVER_ID=" + awsServerID,
		"AWS_STS_ENDPOINT=" + e.sts.URL, "AWS_RESOLVE_UNIQUE_IDS=false", "AWS_MAX_RETRIES=0",
		"GCP_PROJECT=" + gcpProject, "GCP_ZONES=europe-west1-b,europe-west1-c", "GCP_JWKS_URL=" + e.iss.JWKSURL,
		"AZURE_TENANT=" + azureTenant, "AZURE_SUBSCRIPTION=" + azureSub, "AZURE_RESOURCE=" + azureRes, "AZURE_JWKS_URL=" + e.iss.JWKSURL,
		"JWT_AUDIENCE=" + jwtAudience, "JWT_JWKS_URL=" + e.iss.JWKSURL, "JWT_ISSUER=" + jwtIssuer,
		"TOKEN_TTL=" + authTokenTTL, "PREFERRED_MAX_TTL=30s", "FALLBACK_MAX_TTL=30s",
	}, extraScriptEnv...)...)
	e.audit = filepath.Join(e.dir, "audit.log")
	v.EnableFileAudit(t, e.audit, "cert", "aws", "jwt-gcp", "jwt-azure", "jwt", "approle")
	return e
}

// blocks of auth for the config.
func (e *cloudEnv) awsBlock(extra ...string) string {
	return fmt.Sprintf(`
  auth "aws" {
    role          = %q
    header_value  = %q
    imds_endpoint = %q
    %s
  }`, vaulttest.ScriptAuthRole, awsServerID, e.imds.URL, strings.Join(extra, "\n    "))
}

func (e *cloudEnv) gcpBlock() string {
	return fmt.Sprintf(`
  auth "jwt" {
    mount        = "jwt-gcp"
    role         = %q
    metadata     = "gcp"
    audience     = %q
    metadata_url = %q
  }`, vaulttest.ScriptAuthRole, gcpAudience, e.gcp.URL)
}

func (e *cloudEnv) azureBlock() string {
	return fmt.Sprintf(`
  auth "jwt" {
    mount        = "jwt-azure"
    role         = %q
    metadata     = "azure"
    resource     = %q
    metadata_url = %q
  }`, vaulttest.ScriptAuthRole, azureRes, e.azure.URL)
}

func (e *cloudEnv) jwtFileBlock(file string) string {
	return fmt.Sprintf(`
  auth "jwt" {
    role       = %q
    token_file = %q
  }`, vaulttest.ScriptAuthRole, file)
}

func (e *cloudEnv) certBlock() string {
	return fmt.Sprintf(`
  auth "cert" {
    certificate = "vault-identity"
    name        = %q
  }`, vaulttest.ScriptAuthRole)
}

func (e *cloudEnv) approleBlock(wrapped bool) string {
	w := ""
	if wrapped {
		w = "secret_id_wrapped = true"
	}
	return fmt.Sprintf(`
  auth "approle" {
    role_id_file   = %q
    secret_id_file = %q
    %s
  }`, e.roleIDFile, e.secretIDFile, w)
}

// identityCert is cert auth's certificate block: a client certificate
// from the script's client CA, which the script's cert auth role trusts.
func (e *cloudEnv) identityCert(ttl string) string {
	return fmt.Sprintf(`
certificate "vault-identity" {
  mount       = %q
  role        = %q
  common_name = %q
  ttl         = %q
  cert_file   = "%[5]s/id.crt"
  key_file    = "%[5]s/id.key"
  chain_file  = "%[5]s/id.chain.pem"
}
`, vaulttest.ScriptClientMount, vaulttest.ScriptClientRole, hostCN, ttl, e.dir)
}

func (e *cloudEnv) webCert(ttl string, extra ...string) string {
	return fmt.Sprintf(`
certificate "web" {
  mount       = %q
  role        = %q
  common_name = "web1.example.internal"
  ttl         = %q
  cert_file   = "%[4]s/web.crt"
  key_file    = "%[4]s/web.key"
  %s
}
`, vaulttest.ScriptServerMount, vaulttest.ScriptServerRole, ttl, e.dir, strings.Join(extra, "\n  "))
}

// config writes a config with these auth blocks (in order) and blocks,
// over https to Vault, and returns its path.
func (e *cloudEnv) config(name string, auth []string, vaultExtra string, blocks ...string) string {
	e.t.Helper()
	cfg := fmt.Sprintf(`
state_dir = "%s/state-%s"
vault {
  address = %q
  ca_cert = %q
  %s
%s
}
`, e.dir, name, e.vault.TLSAddr, e.vault.TLSCA.CertFile, vaultExtra, strings.Join(auth, "\n")) + strings.Join(blocks, "\n")
	if !strings.Contains(cfg, "telemetry {") {
		cfg += "\ntelemetry {\n  listen = \"\"\n}\n"
	}
	path := filepath.Join(e.dir, name+".hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// cloudProcEnv is the environment certkeeper runs in: nothing of the
// machine's AWS settings, a home of its own.
func (e *cloudEnv) procEnv() []string {
	var out []string
	for _, kv := range cleanEnv() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "HOME=") {
			out = append(out, kv)
		}
	}
	return append(out, "HOME="+e.dir, "AWS_CONFIG_FILE="+filepath.Join(e.dir, "no-aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(e.dir, "no-aws-credentials"))
}

func (e *cloudEnv) once(cfg string) (stdout, stderr string, code int) {
	e.t.Helper()
	return runCertkeeper(e.t, e.procEnv(), "once", "-config", cfg, "-log-level", "debug")
}

func (e *cloudEnv) start(cfg string) *daemon {
	e.t.Helper()
	return startDaemonEnv(e.t, e.procEnv(), cfg)
}

// logins are the logins in Vault's audit log so far.
func (e *cloudEnv) logins() []vaulttest.AuditLogin {
	return vaulttest.AuditLogins(e.t, e.audit)
}

// TestCloudLogins: each new method alone, against the real Vault through
// the roles setup-auth.sh made: aws signs for STS (through the stand-in,
// which checks the signature and the server ID header), jwt from GCP's and
// Azure's metadata servers (roles bound to the audience, the project and
// zones, the tenant and the VM's resource ID) and from a file. Each `once`
// issues its certificate, and Vault's audit log shows the login where it
// belongs, with the claims Vault took from the token.
func TestCloudLogins(t *testing.T) {
	t.Parallel()
	e := newCloudEnv(t)
	tokenFile := filepath.Join(e.dir, "token.jwt")
	os.WriteFile(tokenFile, []byte(e.iss.Mint(map[string]any{"iss": jwtIssuer, "aud": jwtAudience, "sub": "system:serviceaccount:web:certkeeper"}, time.Hour)), 0o600)
	for _, tt := range []struct {
		name, block, method, mount string
	}{
		{"aws", e.awsBlock(), "aws", "aws"},
		{"gcp", e.gcpBlock(), "jwt", "jwt-gcp"},
		{"azure", e.azureBlock(), "jwt", "jwt-azure"},
		{"jwtfile", e.jwtFileBlock(tokenFile), "jwt", "jwt"},
	} {
		before := len(e.logins())
		cfg := e.config(tt.name, []string{tt.block}, "", e.webCert("1h", fmt.Sprintf(`fullchain_file = "%s/%s.pem"`, e.dir, tt.name)))
		out, errOut, code := e.once(cfg)
		if code != 0 {
			t.Fatalf("%s: once exited %d:\n%s\n%s", tt.name, code, out, errOut)
		}
		if !regexp.MustCompile(`logged in to vault.*method=` + tt.method + ` mount=` + tt.mount + ` `).MatchString(errOut) {
			t.Errorf("%s: no login logged:\n%s", tt.name, errOut)
		}
		logins := e.logins()[before:]
		if len(logins) != 1 || !logins[0].OK || logins[0].Mount() != tt.mount || logins[0].Role != vaulttest.ScriptAuthRole {
			t.Errorf("%s: audit log logins %+v, want one good login at %s as %s", tt.name, logins, tt.mount, vaulttest.ScriptAuthRole)
		}
		t.Logf("%s: %s login at auth/%s as %s", tt.name, logins[0].MountType, logins[0].Mount(), logins[0].Role)
	}
	// What Vault made of the tokens: claim_mappings of the scripts' roles.
	for _, l := range e.logins() {
		switch l.Mount() {
		case "jwt-gcp":
			if !strings.Contains(l.Line, `"instance_name":"web-1"`) || !strings.Contains(l.Line, `"zone":"europe-west1-b"`) {
				t.Errorf("gcp login's metadata lacks the instance: %s", l.Line)
			}
		case "jwt-azure":
			if !strings.Contains(l.Line, `"resource_id":"/subscriptions/sub-1/resourcegroups/rg-web/providers/Microsoft.Compute/virtualMachines/web-1"`) {
				t.Errorf("azure login's metadata lacks the VM: %s", l.Line)
			}
		case "aws":
			if !strings.Contains(l.Line, `"account_id":"`+awsAccount+`"`) {
				t.Errorf("aws login's metadata lacks the account: %s", l.Line)
			}
		}
	}
	// Vault asked STS twice per aws login (the login, then the lease's
	// role), both accepted, both signed as the SDK signs for us-east-1.
	calls := e.sts.Calls()
	if len(calls) != 2 {
		t.Errorf("STS saw %d calls, want 2", len(calls))
	}
	for _, c := range calls {
		if !c.Accepted || c.Host != "sts.amazonaws.com" || c.Region != "us-east-1" {
			t.Errorf("STS call %+v", c)
		}
	}
}

func runCertkeeper(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return cktest.Run(t, certkeeperBin, env, args...)
}

func startDaemonEnv(t *testing.T, env []string, cfg string) *daemon {
	t.Helper()
	return &daemon{cktest.Start(t, cktest.Options{
		Bin:  certkeeperBin,
		Args: []string{"run", "-config", cfg, "-log-level", "debug"},
		Env:  env,
	})}
}

// TestCloudAuthBadInput: what goes wrong on a host gets a clear error
// from `once`, bounded by the request timeout, and Vault's audit log
// shows no login where certkeeper never got that far: STS refusing the
// signature, an instance without credentials, the Vault role bound to
// another audience, GCP's metadata server answering garbage or hanging,
// Azure's refusing. And an unknown method, or a method without its
// options, is refused by `validate` with file:line.
func TestCloudAuthBadInput(t *testing.T) {
	t.Parallel()
	e := newCloudEnv(t)
	wrongAud := filepath.Join(e.dir, "wrong-aud.jwt")
	os.WriteFile(wrongAud, []byte(e.iss.Mint(map[string]any{"iss": jwtIssuer, "aud": "someone-else", "sub": "x"}, time.Hour)), 0o600)
	for _, tt := range []struct {
		name  string
		block string
		setup func()
		want  []string
		// vault: whether the login reaches Vault (and its audit log).
		vault bool
	}{
		{"sts refuses", e.awsBlock(), func() { e.sts.SetMode(cloudtest.Refuse) },
			[]string{"aws login (role web-host): vault answered 400 on auth/aws/login", "received error code 403 from STS", "SignatureDoesNotMatch"}, true},
		{"no instance profile", e.awsBlock(), func() { e.sts.SetMode(cloudtest.OK); e.imds.SetMode(cloudtest.Refuse) },
			[]string{"no aws credentials: none from the instance metadata service at " + e.imds.URL, "and none in the environment, shared files"}, false},
		{"wrong audience", e.jwtFileBlock(wrongAud), func() { e.imds.SetMode(cloudtest.OK) },
			[]string{"jwt login (role web-host): vault answered 400 on auth/jwt/login", "audience claim does not match"}, true},
		{"gcp garbage", e.gcpBlock(), func() { e.gcp.SetMode(cloudtest.Garbage) },
			[]string{"the gcp metadata server answered something that is not a JWT"}, false},
		{"gcp hangs", e.gcpBlock(), func() { e.gcp.SetMode(cloudtest.Hang) },
			[]string{"the gcp metadata server at " + e.gcp.URL + " did not answer within 2s"}, false},
		{"azure refuses", e.azureBlock(), func() { e.gcp.SetMode(cloudtest.OK); e.azure.SetMode(cloudtest.Refuse) },
			[]string{"the azure metadata server answered 400: invalid_request: Identity not found"}, false},
	} {
		tt.setup()
		before := len(e.logins())
		name := strings.ReplaceAll(tt.name, " ", "-")
		cfg := e.config(name, []string{tt.block}, `timeout = "2s"`, e.webCert("1h", fmt.Sprintf(`fullchain_file = "%s/%s.pem"`, e.dir, name)))
		out, errOut, code := e.once(cfg)
		all := out + errOut
		if code == 0 {
			t.Errorf("%s: once succeeded", tt.name)
		}
		for _, w := range tt.want {
			if !strings.Contains(all, w) {
				t.Errorf("%s: output lacks %q:\n%s", tt.name, w, all)
			}
		}
		logins := e.logins()[before:]
		if tt.vault && (len(logins) == 0 || logins[0].OK) {
			t.Errorf("%s: audit log logins %+v, want refused ones", tt.name, logins)
		}
		if !tt.vault && len(logins) != 0 {
			t.Errorf("%s: %d logins reached Vault, want none", tt.name, len(logins))
		}
		t.Logf("%s: %s", tt.name, regexp.MustCompile(`once failed.*|(?m)^.*: (aws|jwt) login.*$|(?m)^.*metadata server.*$`).FindString(all))
	}

	for _, tt := range []struct{ block, want string }{
		{`auth "kerberos" {}`, `:7:3: auth method "kerberos" is not supported (use "approle", "aws", "cert", "jwt" or "token")`},
		{`auth "aws" {}`, `:7:3: auth "aws" needs role`},
		{`auth "jwt" { role = "web-host" }`, `:7:3: auth "jwt" needs token_file (a file holding the JWT) or metadata ("gcp" or "azure", the metadata server that makes one)`},
	} {
		cfg := e.config("invalid", []string{"  " + tt.block}, "", e.webCert("1h"))
		out, errOut, code := runCertkeeper(t, e.procEnv(), "validate", "-config", cfg)
		if code == 0 || !strings.Contains(out+errOut, cfg+tt.want) {
			b, _ := os.ReadFile(cfg)
			t.Errorf("validate %s: exit %d, want %q:\nstdout %q\nstderr %q\n%s", tt.block, code, cfg+tt.want, out, errOut, b)
		}
	}
}
