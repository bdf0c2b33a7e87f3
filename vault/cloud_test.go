package vault

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/test/cloudtest"
)

var testAWSCreds = cloudtest.AWSCredentials{
	AccessKeyID:     "ASIATESTINSTANCEKEY01",
	SecretAccessKey: "instance-secret-key/must-never-be-printed",
	SessionToken:    "instance-session-token-must-never-be-printed",
}

// isolateAWS keeps the machine's AWS settings out of a test: no
// environment credentials, no shared files.
func isolateAWS(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "no-config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "no-credentials"))
}

// replay sends the signed request from a login's body to sts the way
// Vault does: to <sts_endpoint>/<path>, with the signed Host.
func replay(t *testing.T, sts *cloudtest.STS, data map[string]any) *http.Response {
	t.Helper()
	dec := func(k string) []byte {
		b, err := base64.StdEncoding.DecodeString(data[k].(string))
		if err != nil {
			t.Fatalf("%s is not base64: %v", k, err)
		}
		return b
	}
	u, body := string(dec("iam_request_url")), dec("iam_request_body")
	var hdr http.Header
	if err := json.Unmarshal(dec("iam_request_headers"), &hdr); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimSuffix(strings.TrimPrefix(u, "https://"), "/")
	req, _ := http.NewRequest(data["iam_http_request_method"].(string), sts.URL+"//", bytes.NewReader(body))
	req.Header = hdr
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestAWSSignedRequest: with an instance profile behind IMDSv2, the login
// carries a GetCallerIdentity request that STS accepts: signed with the
// instance's key over host, date and the server ID header, for the
// endpoint of the region. The wrong server ID, or none, is refused.
func TestAWSSignedRequest(t *testing.T) {
	isolateAWS(t)
	imds := cloudtest.NewIMDS(t, "web-host", testAWSCreds)
	for _, region := range []string{"us-east-1", "eu-west-3"} {
		sts := cloudtest.NewSTS(t, "123456789012", "vault.example.internal")
		sts.Allow(testAWSCreds, "web-host")
		a := config.Auth{Method: config.AuthAWS, Mount: "aws", Role: "web-host", Region: region,
			HeaderValue: "vault.example.internal", IMDSEndpoint: imds.URL}
		l := newAWSLogin(a, loginEnv{timeout: 5 * time.Second, now: time.Now})
		data, err := l.signedRequest(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if data["role"] != "web-host" || data["iam_http_request_method"] != "POST" {
			t.Errorf("login body: %v", data)
		}
		resp := replay(t, sts, data)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "assumed-role/web-host/") {
			t.Fatalf("%s: STS answered %d: %s", region, resp.StatusCode, body)
		}
		call := sts.Calls()[0]
		wantHost := "sts.amazonaws.com"
		if region != "us-east-1" {
			wantHost = "sts." + region + ".amazonaws.com"
		}
		if call.Host != wantHost || call.Region != region {
			t.Errorf("signed for %s in %s, want %s in %s", call.Host, call.Region, wantHost, region)
		}
		for _, h := range []string{"host", "x-amz-date", "x-amz-security-token", "x-vault-aws-iam-server-id"} {
			if !strings.Contains(strings.Join(call.SignedHeaders, ";"), h) {
				t.Errorf("%s is not among the signed headers %v", h, call.SignedHeaders)
			}
		}
	}
	// Only IMDSv2: the session token was asked for.
	if reqs := imds.Requests(); len(reqs) == 0 || reqs[0] != "PUT /latest/api/token" {
		t.Errorf("IMDS requests %v, want the IMDSv2 token first", reqs)
	}

	sts := cloudtest.NewSTS(t, "123456789012", "another-vault.example.internal")
	sts.Allow(testAWSCreds, "web-host")
	for _, hv := range []string{"vault.example.internal", ""} {
		a := config.Auth{Method: config.AuthAWS, Role: "web-host", Region: "us-east-1", HeaderValue: hv, IMDSEndpoint: imds.URL}
		data, err := newAWSLogin(a, loginEnv{timeout: 5 * time.Second, now: time.Now}).signedRequest(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if resp := replay(t, sts, data); resp.StatusCode != 403 {
			t.Errorf("server ID %q accepted by an STS that wants another", hv)
		}
	}
}

// TestAWSCredentialSources: the instance profile first; without one, the
// environment; without either, an error that says where it looked. An
// IMDSv1-only endpoint is not used, and a metadata service that hangs is
// given up on within the request timeout. No error holds a key.
func TestAWSCredentialSources(t *testing.T) {
	isolateAWS(t)
	imds := cloudtest.NewIMDS(t, "web-host", testAWSCreds)
	envCreds := cloudtest.AWSCredentials{AccessKeyID: "AKIAENVIRONMENTKEY01", SecretAccessKey: "env-secret-key-must-never-be-printed"}
	get := func(timeout time.Duration) (string, string, error) {
		t.Helper()
		l := newAWSLogin(config.Auth{Method: config.AuthAWS, Role: "r", Region: "us-east-1", IMDSEndpoint: imds.URL}, loginEnv{timeout: timeout, now: time.Now})
		c, err := l.credentials(t.Context())
		if err != nil {
			for _, secret := range []string{testAWSCreds.SecretAccessKey, testAWSCreds.SessionToken, envCreds.SecretAccessKey} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error holds a secret: %v", err)
				}
			}
		}
		return c.AccessKeyID, c.Source, err
	}

	// Both an instance profile and environment keys: the instance wins.
	t.Setenv("AWS_ACCESS_KEY_ID", envCreds.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", envCreds.SecretAccessKey)
	if key, src, err := get(5 * time.Second); err != nil || key != testAWSCreds.AccessKeyID {
		t.Errorf("with an instance profile: key %s from %s, %v; want the instance's", key, src, err)
	}
	// No instance profile (IMDS answers 404 for the role list): environment.
	imds.SetMode(cloudtest.Refuse)
	if key, _, err := get(5 * time.Second); err != nil || key != envCreds.AccessKeyID {
		t.Errorf("without an instance profile: key %s, %v; want the environment's", key, err)
	}
	// IMDSv1 only: not used.
	imds.SetMode(cloudtest.V1Only)
	if key, _, err := get(5 * time.Second); err != nil || key != envCreds.AccessKeyID {
		t.Errorf("IMDSv1-only endpoint: key %s, %v; want the environment's", key, err)
	}
	// Nothing anywhere.
	os.Unsetenv("AWS_ACCESS_KEY_ID")
	os.Unsetenv("AWS_SECRET_ACCESS_KEY")
	_, _, err := get(5 * time.Second)
	if err == nil || !strings.Contains(err.Error(), "none from the instance metadata service at "+imds.URL) ||
		!strings.Contains(err.Error(), "none in the environment, shared files") {
		t.Errorf("no credentials anywhere: %v", err)
	}
	// Garbage from the metadata service.
	imds.SetMode(cloudtest.Garbage)
	if _, _, err := get(5 * time.Second); err == nil {
		t.Error("credentials from an HTML page")
	}
	// Hanging: bounded by the request timeout.
	imds.SetMode(cloudtest.Hang)
	start := time.Now()
	_, _, err = get(time.Second)
	if err == nil || !strings.Contains(err.Error(), "did not answer within 1s") {
		t.Errorf("hanging IMDS: %v", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("hanging IMDS held the login for %v", d)
	}
}

func TestSTSEndpoint(t *testing.T) {
	for region, want := range map[string]string{
		"us-east-1":     "https://sts.amazonaws.com/",
		"eu-central-1":  "https://sts.eu-central-1.amazonaws.com/",
		"us-gov-west-1": "https://sts.us-gov-west-1.amazonaws.com/",
		"cn-north-1":    "https://sts.cn-north-1.amazonaws.com.cn/",
	} {
		if got := stsEndpoint(region); got != want {
			t.Errorf("stsEndpoint(%s) = %s, want %s", region, got, want)
		}
	}
}

// TestJWTSources: a JWT from a file (read at every login), from GCP's
// metadata server (audience and format=full asked, Metadata-Flavor sent)
// and from Azure IMDS (resource asked, Metadata: true sent). Garbage,
// refusals, redirects and silence are clear errors, bounded by the
// request timeout, and none quotes what came back.
func TestJWTSources(t *testing.T) {
	iss := cloudtest.NewIssuer(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "token.jwt")
	token := func(a config.Auth, timeout time.Duration) (string, error) {
		return newJWTLogin(a, loginEnv{timeout: timeout}).token(t.Context())
	}
	claims := func(jwt string) map[string]any {
		parts := strings.Split(jwt, ".")
		b, _ := base64.RawURLEncoding.DecodeString(parts[1])
		var c map[string]any
		json.Unmarshal(b, &c)
		return c
	}

	// A file, rotated between logins.
	fa := config.Auth{Method: config.AuthJWT, Role: "r", TokenFile: file}
	for _, sub := range []string{"first", "second"} {
		os.WriteFile(file, []byte(iss.Mint(map[string]any{"sub": sub}, time.Hour)+"\n"), 0o600)
		got, err := token(fa, time.Second)
		if err != nil || claims(got)["sub"] != sub {
			t.Fatalf("token file with sub %s: %v, %v", sub, claims(got), err)
		}
	}
	os.WriteFile(file, []byte("hvs.this-is-a-vault-token-not-a-jwt"), 0o600)
	if _, err := token(fa, time.Second); err == nil || !strings.Contains(err.Error(), "does not hold a JWT") || strings.Contains(err.Error(), "hvs.") {
		t.Errorf("a file without a JWT: %v", err)
	}
	os.Remove(file)
	if _, err := token(fa, time.Second); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("a missing file: %v", err)
	}

	gcp := cloudtest.NewGCPMetadata(t, iss, cloudtest.GCPInstance{ProjectID: "proj-a", Zone: "europe-west1-b", InstanceName: "web-1", ServiceAccount: "web@proj-a.iam.gserviceaccount.com"})
	ga := config.Auth{Method: config.AuthJWT, Role: "r", Metadata: config.MetadataGCP, Audience: "vault/certkeeper", MetadataURL: gcp.URL}
	got, err := token(ga, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := claims(got)
	ce, _ := c["google"].(map[string]any)["compute_engine"].(map[string]any)
	if c["aud"] != "vault/certkeeper" || ce["project_id"] != "proj-a" {
		t.Errorf("gcp token claims: %v", c)
	}

	az := cloudtest.NewAzureMetadata(t, iss, cloudtest.AzureIdentity{TenantID: "tenant-1", ObjectID: "oid-1", ClientID: "app-1",
		ResourceID: "/subscriptions/sub-1/resourcegroups/rg-1/providers/Microsoft.Compute/virtualMachines/web-1"})
	aa := config.Auth{Method: config.AuthJWT, Role: "r", Metadata: config.MetadataAzure, Audience: "https://vault.example.internal", MetadataURL: az.URL}
	got, err = token(aa, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c := claims(got); c["aud"] != "https://vault.example.internal" || !strings.HasSuffix(c["xms_mirid"].(string), "/virtualMachines/web-1") {
		t.Errorf("azure token claims: %v", c)
	}

	for _, tt := range []struct {
		name string
		a    config.Auth
		md   *cloudtest.Metadata
		mode cloudtest.Mode
		want string
	}{
		{"gcp garbage", ga, gcp, cloudtest.Garbage, "the gcp metadata server answered something that is not a JWT"},
		{"gcp refuses", ga, gcp, cloudtest.Refuse, "the gcp metadata server answered 403"},
		{"gcp hangs", ga, gcp, cloudtest.Hang, "the gcp metadata server at " + gcp.URL + " did not answer within 1s"},
		{"azure garbage", aa, az, cloudtest.Garbage, "the azure metadata server answered something that is not its token JSON (54 bytes of text/html)"},
		{"azure refuses", aa, az, cloudtest.Refuse, "the azure metadata server answered 400: invalid_request: Identity not found"},
		{"azure hangs", aa, az, cloudtest.Hang, "the azure metadata server at " + az.URL + " did not answer within 1s"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.md.SetMode(tt.mode)
			defer tt.md.SetMode(cloudtest.OK)
			start := time.Now()
			_, err := token(tt.a, time.Second)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
			if strings.Contains(fmtErr(err), "hotel") {
				t.Errorf("the error quotes the answer: %v", err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}

	// A redirect is not followed, a huge answer not read whole, an error
	// page not quoted (whatever it holds).
	leaked := iss.Mint(map[string]any{"sub": "leaked"}, time.Hour)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/big") {
			w.Write(bytes.Repeat([]byte("a"), maxMetadataAnswer+10))
			return
		}
		if strings.HasPrefix(r.URL.Path, "/leak") {
			http.Error(w, leaked, http.StatusInternalServerError)
			return
		}
		http.Redirect(w, r, gcp.URL+r.URL.RequestURI(), http.StatusFound)
	}))
	defer other.Close()
	ra := ga
	ra.MetadataURL = other.URL
	if _, err := token(ra, 5*time.Second); err == nil || !strings.Contains(err.Error(), "answered 302") {
		t.Errorf("redirect: %v", err)
	}
	ra.MetadataURL = other.URL + "/leak"
	if _, err := token(ra, 5*time.Second); err == nil || !strings.Contains(err.Error(), "answered 500") || strings.Contains(err.Error(), leaked[:20]) {
		t.Errorf("error page: %v", err)
	}
	ra.MetadataURL = other.URL + "/big"
	if _, err := token(ra, 5*time.Second); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("huge answer: %v", err)
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestCheckJWT(t *testing.T) {
	good := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
	for s, want := range map[string]string{
		good:                             "",
		"":                               "found 1",
		"a.b":                            "found 2",
		"eyJhbGciOiJSUzI1NiJ9.eyJ9.":     "no signature",
		"eyJhbGciOiJSUzI1NiJ9.e$J9.c2ln": "not base64url",
		"eyJ0eXAiOiJKV1QifQ.eyJ9.c2ln":   "with an alg",
		"<html>.<body>.</html>":          "not base64url",
	} {
		err := checkJWT(s)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("checkJWT(%q) = %v, want %q", s, err, want)
		}
	}
}
