package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"

	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/certkeeper/certkeeper/config"
)

// WebConfigChecker checks telemetry's web_config_file while a config
// loads (config.WebConfigChecker). It reads the file with the exporter
// toolkit's own types, as strictly as the toolkit does, but not the
// certificate files it names: those are the toolkit's to load when the
// endpoint starts, and `validate` may run where they do not exist (a CI
// job) or as a user who may not read a key.
type WebConfigChecker struct{}

var _ config.WebConfigChecker = WebConfigChecker{}

// CheckWebConfig implements config.WebConfigChecker.
func (WebConfigChecker) CheckWebConfig(path string) (bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	var c web.Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return false, err
	}
	for user, hash := range c.Users {
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return false, fmt.Errorf("basic_auth_users: the password of %q is not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)", user)
		}
	}
	t := c.TLSConfig
	if !t.IsEnabled() {
		return false, nil
	}
	if t.TLSCertPath == "" && t.TLSCert == "" {
		return true, errors.New("tls_server_config: cert_file (or cert) is missing")
	}
	if t.TLSKeyPath == "" && t.TLSKey == "" {
		return true, errors.New("tls_server_config: key_file (or key) is missing")
	}
	switch t.ClientAuth {
	case "", "NoClientCert":
		if t.ClientCAs != "" || t.ClientCAsText != "" {
			return true, errors.New("tls_server_config: client_ca_file without client_auth_type verifies nobody (use RequireAndVerifyClientCert)")
		}
	case "RequestClientCert", "RequireAnyClientCert", "RequireClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert":
	default:
		return true, fmt.Errorf("tls_server_config: client_auth_type %q is not one the exporter toolkit knows", t.ClientAuth)
	}
	return true, nil
}

// webConfigReady is the toolkit's full check of the file, certificate
// files included, made before the endpoint listens.
func webConfigReady(path string) error {
	if path == "" {
		return nil
	}
	if err := web.Validate(path); err != nil {
		return fmt.Errorf("web_config_file %s: %w", path, err)
	}
	return nil
}

// serveOn serves srv on ln: plainly, or through the exporter toolkit when
// there is a web configuration file, which then adds TLS from its files,
// basic auth, or both, reading the file again at every connection and
// request as node_exporter does.
func serveOn(ln net.Listener, srv *http.Server, o ServeOptions) error {
	if o.WebConfigFile == "" {
		return srv.Serve(ln)
	}
	off := false
	flags := &web.FlagConfig{
		WebListenAddresses: &[]string{o.Listen},
		WebSystemdSocket:   &off,
		WebConfigFile:      &o.WebConfigFile,
	}
	// The toolkit logs its own view at info ("TLS is disabled." when TLS
	// is certkeeper's, on the listener it is given); certkeeper's line
	// about the endpoint says what is in force, so only its warnings and
	// errors are kept.
	log := slog.New(levelFloor{o.Log.Handler(), slog.LevelWarn}).With("component", "web_config")
	return web.Serve(ln, srv, flags, log)
}

// levelFloor drops records below min.
type levelFloor struct {
	slog.Handler
	min slog.Level
}

func (l levelFloor) Enabled(ctx context.Context, level slog.Level) bool {
	return level >= l.min && l.Handler.Enabled(ctx, level)
}

func (l levelFloor) WithAttrs(attrs []slog.Attr) slog.Handler {
	return levelFloor{l.Handler.WithAttrs(attrs), l.min}
}

func (l levelFloor) WithGroup(name string) slog.Handler {
	return levelFloor{l.Handler.WithGroup(name), l.min}
}
