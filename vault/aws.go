package vault

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/hashicorp/vault/api"

	"github.com/certkeeper/certkeeper/config"
)

// awsLogin is Vault's aws auth method, IAM type: certkeeper signs an STS
// GetCallerIdentity request with the host's AWS credentials and hands it
// to Vault, which sends it to STS and learns from the answer who signed.
// The request never goes to AWS from here, and its signature is good for
// minutes only; with header_value it names this Vault, so another Vault
// (or anyone who reads it) cannot replay it elsewhere.
//
// Signing and the credential sources are the AWS SDK's (aws-sdk-go-v2):
// SigV4 is easy to get subtly wrong, and the credential chain (shared
// files, profiles, web identity, containers) is a moving target that
// AWS maintains.
type awsLogin struct {
	cfg     config.Auth
	imds    *imds.Client
	timeout time.Duration
	now     func() time.Time
}

// stsBody is the one request Vault accepts for an IAM login.
const stsBody = "Action=GetCallerIdentity&Version=2011-06-15"

func newAWSLogin(a config.Auth, env loginEnv) *awsLogin {
	client := imds.New(imds.Options{
		Endpoint: a.IMDSEndpoint,
		// IMDSv2 only: a v1 fallback would hand the credentials to any
		// request that reaches the metadata address (an SSRF on the host).
		EnableFallback: aws.FalseTernary,
		HTTPClient:     metadataHTTPClient(env.timeout),
	})
	return &awsLogin{cfg: a, imds: client, timeout: env.timeout, now: env.now}
}

func (l *awsLogin) login(ctx context.Context, c *api.Client) (*api.Secret, error) {
	data, err := l.signedRequest(ctx)
	if err != nil {
		return nil, fmt.Errorf("aws login (role %s): %w", l.cfg.Role, err)
	}
	ctx, info := withCallInfo(ctx)
	secret, err := c.Logical().WriteWithContext(ctx, "auth/"+l.cfg.Mount+"/login", data)
	if err != nil {
		return nil, fmt.Errorf("aws login (role %s): %w", l.cfg.Role, classify(err, info))
	}
	if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
		return nil, fmt.Errorf("aws login (role %s): vault returned no token", l.cfg.Role)
	}
	c.SetToken(secret.Auth.ClientToken)
	return secret, nil
}

// signedRequest is the login's body: the GetCallerIdentity request,
// signed, in the form Vault takes it. It holds a session token and a
// signature: it goes to Vault and nowhere else.
func (l *awsLogin) signedRequest(ctx context.Context) (map[string]any, error) {
	creds, err := l.credentials(ctx)
	if err != nil {
		return nil, err
	}
	endpoint := stsEndpoint(l.cfg.Region)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(stsBody))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	if l.cfg.HeaderValue != "" {
		// Set before signing, so it is among the signed headers: Vault
		// refuses the header unsigned.
		req.Header.Set("X-Vault-AWS-IAM-Server-ID", l.cfg.HeaderValue)
	}
	sum := sha256.Sum256([]byte(stsBody))
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "sts", l.cfg.Region, l.now()); err != nil {
		return nil, fmt.Errorf("signing the sts request: %w", err)
	}
	headers, err := json.Marshal(req.Header)
	if err != nil {
		return nil, err
	}
	b64 := base64.StdEncoding.EncodeToString
	return map[string]any{
		"role":                    l.cfg.Role,
		"iam_http_request_method": http.MethodPost,
		"iam_request_url":         b64([]byte(endpoint)),
		"iam_request_body":        b64([]byte(stsBody)),
		"iam_request_headers":     b64(headers),
	}, nil
}

// stsEndpoint is the STS endpoint a request for region is signed for:
// the global one for us-east-1 (Vault's default sts_endpoint), the
// regional one otherwise.
func stsEndpoint(region string) string {
	switch {
	case region == config.DefaultAWSRegion:
		return "https://sts.amazonaws.com/"
	case strings.HasPrefix(region, "cn-"):
		return "https://sts." + region + ".amazonaws.com.cn/"
	}
	return "https://sts." + region + ".amazonaws.com/"
}

// credentials are the instance profile's, from IMDSv2, when the host has
// one; otherwise whatever the SDK's default chain finds (environment,
// shared files, web identity, container). The SDK's own chain looks at
// the instance profile last and picks its source once; certkeeper asks
// at every login, instance profile first, so a host keeps logging in as
// its role whatever an operator's shell left in the environment.
func (l *awsLogin) credentials(ctx context.Context) (aws.Credentials, error) {
	// Bounded like a request to Vault: a metadata service that hangs must
	// not hold the login (and with it every renewal) for long.
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	creds, imdsErr := ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = l.imds }).Retrieve(ctx)
	if imdsErr == nil {
		return creds, nil
	}
	if timedOut(ctx) {
		return aws.Credentials{}, fmt.Errorf("no aws credentials: the instance metadata service at %s did not answer within %s", l.cfg.IMDSEndpoint, l.timeout)
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(l.cfg.Region),
		// Asked above already; the chain must not ask again.
		awsconfig.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("no aws credentials: instance profile: %w; environment and shared files: %w", imdsErr, err)
	}
	if src, ok := cfg.Credentials.(interface{ ProviderSources() []aws.CredentialSource }); ok &&
		slices.Equal(src.ProviderSources(), []aws.CredentialSource{aws.CredentialSourceIMDS}) {
		// The chain found nothing and fell through to the instance
		// profile, which is switched off here.
		return aws.Credentials{}, fmt.Errorf("no aws credentials: none from the instance metadata service at %s (%w), and none in the environment, shared files, web identity or container endpoint", l.cfg.IMDSEndpoint, imdsErr)
	}
	creds, err = cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("no aws credentials: instance profile: %w; default chain: %w", imdsErr, err)
	}
	if !creds.HasKeys() {
		return aws.Credentials{}, errors.New("no aws credentials: the credential chain returned an empty key")
	}
	return creds, nil
}
