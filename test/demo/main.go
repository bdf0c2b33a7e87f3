// Command demo is what `make demo` runs: a dev Vault on loopback with a
// small PKI, and `certkeeper run` on examples/demo/certkeeper.hcl, showing
// the files it writes and how to check them. Ctrl-C stops both and removes
// everything the demo made.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/certkeeper/certkeeper/test/vaulttest"
)

const (
	configPath = "examples/demo/certkeeper.hcl"
	runDir     = "examples/demo/run"
	certkeeper = "bin/certkeeper"
	// metricsAddr is telemetry.listen in the demo config.
	metricsAddr = "127.0.0.1:9847"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := os.Stat(certkeeper); err != nil {
		return fmt.Errorf("%s is missing: run `make demo` from the repository root", certkeeper)
	}
	if err := os.RemoveAll(runDir); err != nil {
		return err
	}
	defer func() {
		os.RemoveAll(runDir)
		say("removed %s; the demo Vault is stopped. Bye.", runDir)
	}()
	if err := os.MkdirAll(filepath.Join(runDir, "vault"), 0o700); err != nil {
		return err
	}

	say("starting a dev Vault on loopback (bin/vault)...")
	v, err := vaulttest.Launch(ctx, vaulttest.Options{Dir: filepath.Join(runDir, "vault")})
	if err != nil {
		return err
	}
	defer v.Stop()
	say("setting it up with examples/vault/setup-pki.sh, as you would a real one...")
	roleID, secretID, err := vaulttest.SetupScript(ctx, v, filepath.Join(runDir, "pki"))
	if err != nil {
		return err
	}
	for name, val := range map[string]string{"role-id": roleID, "secret-id": secretID} {
		if err := os.WriteFile(filepath.Join(runDir, name), []byte(val+"\n"), 0o600); err != nil {
			return err
		}
	}
	say("Vault is at %s with a root CA (mount pki_root), an intermediate for servers", v.Addr)
	say("(pki_servers, role web) and one for clients (pki_clients, role client), and")
	say("the AppRole web-host, whose policy reaches only what a web host needs.")

	say("running: VAULT_ADDR=%s %s run -config %s", v.Addr, certkeeper, configPath)
	cmd := exec.Command(certkeeper, "run", "-config", configPath)
	// Set for this process too, so `certkeeper status` below finds Vault's
	// address the same way.
	os.Setenv("VAULT_ADDR", v.Addr)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	if err := waitForFiles(ctx, exited, filepath.Join(runDir, "tls", "web.fullchain.pem"), filepath.Join(runDir, "tls", "client.crt")); err != nil {
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		return err
	}
	time.Sleep(200 * time.Millisecond) // let the agent's log lines land first
	show()

	var exitErr error
	select {
	case <-ctx.Done():
		// Ctrl-C in a terminal reaches certkeeper too; SIGTERM covers the
		// case where only the demo was signalled. It waits a moment first:
		// a SIGTERM landing after certkeeper finished its own clean
		// shutdown (its handlers gone) would kill it with that signal.
		say("stopping certkeeper...")
		select {
		case exitErr = <-exited:
		case <-time.After(3 * time.Second):
			cmd.Process.Signal(syscall.SIGTERM)
			exitErr = <-exited
		}
	case exitErr = <-exited:
		if ctx.Err() == nil {
			return fmt.Errorf("certkeeper exited on its own: %v", exitErr)
		}
	}
	if exitErr != nil {
		return fmt.Errorf("certkeeper did not stop cleanly: %w", exitErr)
	}
	say("certkeeper stopped cleanly (exit 0).")
	return nil
}

func waitForFiles(ctx context.Context, exited <-chan error, paths ...string) error {
	deadline := time.After(60 * time.Second)
	for {
		ready := true
		for _, p := range paths {
			if _, err := os.Stat(p); err != nil {
				ready = false
			}
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-exited:
			return fmt.Errorf("certkeeper exited before writing its files: %v", err)
		case <-deadline:
			return errors.New("certkeeper wrote no files within 60s")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// show lists what certkeeper wrote and runs the openssl checks an operator
// would, so the demo proves itself.
func show() {
	tls := filepath.Join(runDir, "tls")
	say("")
	say("certkeeper wrote these files (note the key's mode, 0600):")
	shell("ls", "-l", tls)
	say("")
	say("the server certificate, as openssl sees it:")
	say("$ openssl x509 -in %s/web.crt -noout -subject -issuer -dates -ext subjectAltName", tls)
	shell("openssl", "x509", "-in", tls+"/web.crt", "-noout", "-subject", "-issuer", "-dates", "-ext", "subjectAltName")
	say("")
	say("it chains to the root through the intermediate:")
	say("$ openssl verify -CAfile %s/web.ca.pem %s/web.fullchain.pem", tls, tls)
	shell("openssl", "verify", "-CAfile", tls+"/web.ca.pem", tls+"/web.fullchain.pem")
	say("")
	say("and the key (made on this host, never sent to Vault) matches it:")
	say("$ openssl x509 -in %s/web.crt -noout -pubkey | cmp - <(openssl pkey -in %s/web.key -pubout) && echo match", tls, tls)
	shell("bash", "-c", fmt.Sprintf("openssl x509 -in %s/web.crt -noout -pubkey | cmp - <(openssl pkey -in %s/web.key -pubout) && echo match", tls, tls))
	say("")
	say("$ %s status -config %s", certkeeper, configPath)
	shell(certkeeper, "status", "-config", configPath)
	say("")
	showMetrics()
	say("")
	say("web lives 2 minutes, so certkeeper renews it in about a minute: watch for")
	say(`"certificate issued and written" with reason="renewal is due" below.`)
	say("Press Ctrl-C to stop certkeeper and Vault and remove %s.", runDir)
	say("")
}

// showMetrics prints a few lines of what Prometheus would scrape.
func showMetrics() {
	const url = "http://" + metricsAddr + "/metrics"
	say("what Prometheus scrapes (a few lines of them; also /healthz, /readyz, /v1/status):")
	say("$ curl -s %s | grep -E '^certkeeper_(certificate_(not_after|renewal|info|renewals)|ca_not_after|vault_requests)'", url)
	resp, err := http.Get(url)
	if err != nil {
		say("(%v)", err)
		return
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	show := regexp.MustCompile(`^certkeeper_(certificate_(not_after|renewal|info|renewals)|ca_not_after|vault_requests)`)
	for sc.Scan() {
		if show.MatchString(sc.Text()) {
			fmt.Println(sc.Text())
		}
	}
}

func shell(name string, args ...string) {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	if err := cmd.Run(); err != nil {
		say("(%s %s: %v)", name, strings.Join(args, " "), err)
	}
}

func say(format string, args ...any) {
	fmt.Printf("==> "+format+"\n", args...)
}
