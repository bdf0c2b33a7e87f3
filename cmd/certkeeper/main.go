// Command certkeeper keeps mutual-TLS certificates from Vault fresh on disk.
//
// main only parses the command line, builds the logger, loads the config,
// hands over to the daemon package and prints what it did; run returns an
// exit code so that deferred cleanups happen before the process exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/daemon"
	"github.com/certkeeper/certkeeper/internal/runas"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage: certkeeper <command> [flags]

commands:
  run       keep every configured certificate fresh (the daemon)
  once      make every certificate valid and written, then exit;
            exit status 0 only when all are in place; through the
            running daemon if there is one
  validate  check the config file (and that the credential files
            it names exist) and exit
  status    show each certificate on disk: serial, expiry, renewal point
  policy    print the least-privilege Vault policy the config needs
  rotate    renew the named certificates (all when none is named) now,
            even if valid: through the running daemon if there is one
  convert vault-agent FILE
            print the certkeeper config that does what the Vault Agent
            config FILE (HCL or JSON) does with certificates, with what
            it cannot translate and what changes as comments; reads no
            certkeeper config and talks to nothing
  version   print the version

flags (run, once, validate, status, policy, rotate):
  -config FILE      config file (default ` + config.DefaultPath + `)
  -log-format F     text or json (default text)
  -log-level L      debug, info, warn or error (default info)
  -json             status only: print JSON for scripts
  -spread D         rotate only: each certificate waits a random time
                    within D (such as 30m) first, to spare Vault
  -pprof ADDR       run only: serve Go profiles (net/http/pprof) on this
                    loopback address, e.g. 127.0.0.1:6060; off by default

usage of rotate: certkeeper rotate -config FILE [NAME...] [-spread D]
`

func main() {
	setGC()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// globals are the flags every command shares.
type globals struct {
	config    string
	logFormat string
	logLevel  string
	json      bool
	spread    time.Duration
	pprof     string
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, args := args[0], args[1:]
	if cmd == "version" {
		fmt.Fprintln(stdout, "certkeeper", version)
		return 0
	}
	if cmd == "convert" {
		return cmdConvert(args, stdout, stderr)
	}
	if cmd == "man" {
		// Hidden: the package build makes certkeeper.1 from the same usage
		// text -h prints, so the man page cannot drift from the command.
		fmt.Fprint(stdout, manPage(usage, version))
		return 0
	}
	commands := map[string]func(context.Context, *env) int{
		"run":      cmdRun,
		"once":     cmdOnce,
		"validate": cmdValidate,
		"status":   cmdStatus,
		"policy":   cmdPolicy,
		"rotate":   cmdRotate,
	}
	handler, ok := commands[cmd]
	if !ok {
		fmt.Fprintf(stderr, "certkeeper: unknown command %q\n\n%s", cmd, usage)
		return 2
	}

	var g globals
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	fs.StringVar(&g.config, "config", config.DefaultPath, "config file")
	fs.StringVar(&g.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&g.logLevel, "log-level", "info", "debug, info, warn or error")
	if cmd == "status" {
		fs.BoolVar(&g.json, "json", false, "print JSON")
	}
	if cmd == "rotate" {
		fs.DurationVar(&g.spread, "spread", 0, "wait a random time within this first")
	}
	if cmd == "run" {
		fs.StringVar(&g.pprof, "pprof", "", "serve Go profiles on this loopback address")
	}
	// Flags may follow names (rotate -config F web api -spread 5m), so
	// parsing resumes after each name.
	var names []string
	for rest := args; ; rest = fs.Args()[1:] {
		if err := fs.Parse(rest); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		names = append(names, fs.Arg(0))
	}
	if len(names) > 0 && cmd != "rotate" {
		fmt.Fprintf(stderr, "certkeeper %s: unexpected arguments: %s\n", cmd, strings.Join(names, " "))
		return 2
	}
	if g.spread < 0 {
		fmt.Fprintf(stderr, "certkeeper %s: -spread must not be negative\n", cmd)
		return 2
	}
	log, err := newLogger(stderr, g.logFormat, g.logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "certkeeper: %v\n", err)
		return 2
	}
	// Libraries that log through the standard log package (consul-template)
	// then go through the same handler.
	slog.SetDefault(log)
	load := daemon.LoadConfig
	if cmd == "validate" {
		load = daemon.ValidateConfig
	}
	cfg, err := load(g.config)
	if err != nil {
		fmt.Fprintf(stderr, "certkeeper: invalid config:\n%v\n", err)
		return 1
	}
	// The commands that read or write state run as the owner of state_dir,
	// before any of it (or Vault, or an output) is touched.
	if cmd == "run" || cmd == "once" || cmd == "rotate" || cmd == "status" {
		if err := runas.StateOwner(cfg.StateDir, log); err != nil {
			fmt.Fprintf(stderr, "certkeeper %s: %v\n", cmd, err)
			return 1
		}
		// An older certkeeper's flat state_dir, moved to the current
		// layout before anything reads it.
		daemon.MigrateState(cfg, log)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return handler(ctx, &env{cfg: cfg, log: log, stdout: stdout, stderr: stderr, json: g.json, names: names, spread: g.spread, pprof: g.pprof})
}

// env is what a command gets to work with.
type env struct {
	cfg    *config.Config
	log    *slog.Logger
	stdout io.Writer
	stderr io.Writer
	json   bool
	// names and spread are rotate's certificates and -spread.
	names  []string
	spread time.Duration
	pprof  string // run only: loopback address for net/http/pprof
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, errors.New("-log-format must be text or json")
}
