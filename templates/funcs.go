package templates

import (
	"fmt"
	"os"
	"path"
	"strings"
	"text/template"
)

// Why each family of functions is disabled. Each reason says what the
// function would have done, so the user sees why it is refused.
const (
	whyVault   = "templates render only the certificate certkeeper holds; they never call Vault (use the certificate function)"
	whyConsul  = "certkeeper does not talk to Consul; templates render only the certificate it holds"
	whyNomad   = "certkeeper does not talk to Nomad; templates render only the certificate it holds"
	whyFile    = "templates must not read local files: that would let a template copy any file certkeeper can read (another key, a token) into its output"
	whyWrite   = "templates must not write files: certkeeper writes each template's output itself, atomically and in one set with the key"
	whyProcess = "templates must not run programs; use the notify/service settings to run commands after a change"
	// go-sockaddr finds the default interface by running `ip route`,
	// looked up in $PATH, and validate renders every template as whoever
	// runs it, root included.
	whyStdout   = "it prints to certkeeper's own output, which is its log (the journal): the data a template sees, key included, must not go there; spew_sdump and spew_sprintf return the text instead"
	whySockaddr = "it runs a program (ip route, found through $PATH) to find the host's addresses, and templates must not run programs; a certificate's output needs no host address"
)

// denied maps every disabled function of consul-template v0.41 to the
// reason. Patterns use path.Match syntax so that functions a later
// consul-template adds to the same families are refused too.
var denied = []struct{ pattern, why string }{
	{"secret", whyVault},
	{"secrets", whyVault},
	{"pkiCert", whyVault},
	{"key", whyConsul},
	{"keyExists", whyConsul},
	{"keyOrDefault", whyConsul},
	{"ls", whyConsul},
	{"safeLs", whyConsul},
	{"tree", whyConsul},
	{"safeTree", whyConsul},
	{"service", whyConsul},
	{"services", whyConsul},
	{"connect", whyConsul},
	{"connect*", whyConsul},
	{"node", whyConsul},
	{"nodes", whyConsul},
	{"datacenters", whyConsul},
	{"exportedServices", whyConsul},
	{"partitions", whyConsul},
	{"peerings", whyConsul},
	{"caRoots", whyConsul},
	{"caLeaf", whyConsul},
	{"nomad*", whyNomad},
	{"file", whyFile},
	{"writeToFile", whyWrite},
	{"plugin", whyProcess},
	{"sockaddr", whySockaddr},
	{"spew_dump", whyStdout},
	{"spew_printf", whyStdout},
}

// deniedNames are the exact names consul-template v0.41 defines, which get
// a replacement that fails with the reason if a template reaches one at
// run time (Check refuses them before that).
var deniedNames = []string{
	"secret", "secrets", "pkiCert",
	"key", "keyExists", "keyOrDefault", "ls", "safeLs", "tree", "safeTree",
	"service", "services", "connect", "node", "nodes", "datacenters",
	"exportedServices", "partitions", "peerings", "caRoots", "caLeaf",
	"nomadServices", "nomadService", "nomadVarList", "nomadVarListSafe", "nomadVar", "nomadVarExists",
	"file", "writeToFile", "plugin", "sockaddr", "spew_dump", "spew_printf",
}

// DeniedFunction says whether templates refuse the consul-template
// function name, and why; for tools that write templates for certkeeper
// (the Vault Agent converter).
func DeniedFunction(name string) (why string, denied bool) { return deniedReason(name) }

func deniedReason(name string) (string, bool) {
	for _, d := range denied {
		if ok, _ := path.Match(d.pattern, name); ok {
			return d.why, true
		}
	}
	return "", false
}

// funcs are the functions certkeeper adds to, or replaces in,
// consul-template's set. ExtFuncMap entries override the engine's own.
func funcs(cert Certificate) template.FuncMap {
	m := template.FuncMap{
		"certificate":  func() Certificate { return cert },
		"env":          envFunc,
		"mustEnv":      mustEnvFunc,
		"envOrDefault": envOrDefaultFunc,
	}
	for _, name := range deniedNames {
		why, _ := deniedReason(name)
		m[name] = func(...any) (string, error) {
			return "", fmt.Errorf("disabled in certkeeper templates: %s", why)
		}
	}
	return m
}

// The environment functions refuse VAULT_* variables: with token auth
// from $VAULT_TOKEN, the agent's own Vault token is in its environment,
// and a template must not be able to copy it into a file.
func envAllowed(name string) error {
	if strings.HasPrefix(strings.ToUpper(name), "VAULT_") {
		return fmt.Errorf("environment variable %s is not available to templates: VAULT_* variables can hold certkeeper's own Vault credentials", name)
	}
	return nil
}

func envFunc(name string) (string, error) {
	if err := envAllowed(name); err != nil {
		return "", err
	}
	return os.Getenv(name), nil
}

func mustEnvFunc(name string) (string, error) {
	v, err := envFunc(name)
	if err == nil && v == "" {
		err = fmt.Errorf("required environment variable %s is empty", name)
	}
	return v, err
}

func envOrDefaultFunc(name, def string) (string, error) {
	if err := envAllowed(name); err != nil {
		return "", err
	}
	if v, ok := os.LookupEnv(name); ok {
		return v, nil
	}
	return def, nil
}
