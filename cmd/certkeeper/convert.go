package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/certkeeper/certkeeper/daemon"
	"github.com/certkeeper/certkeeper/vaultagent"
)

// cmdConvert prints the certkeeper config for a Vault Agent config. It is
// "convert" and not "import": it takes nothing under management, adopts no
// certificate and touches no state; it turns one config into another on
// stdout, for the operator to read, validate and install.
func cmdConvert(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 || args[0] != "vault-agent" {
		fmt.Fprintln(stderr, "usage: certkeeper convert vault-agent FILE > certkeeper.hcl")
		return 2
	}
	path, err := filepath.Abs(args[1])
	if err != nil {
		fmt.Fprintf(stderr, "certkeeper convert: %v\n", err)
		return 1
	}
	src, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "certkeeper convert: %v\n", err)
		return 1
	}
	res, err := vaultagent.Convert(src, vaultagent.Options{Path: path})
	if err != nil {
		fmt.Fprintf(stderr, "certkeeper convert: %v\n", err)
		return 1
	}
	stdout.Write(res.Config)
	// What it prints must be a config certkeeper takes as it is; one
	// that is not is the converter's bug, and is said.
	if _, err := daemon.ParseConfig(filepath.Join(filepath.Dir(path), "certkeeper.hcl"), res.Config); err != nil {
		fmt.Fprintf(stderr, "certkeeper convert: the config above does not validate (a bug in the converter; please report it with the Vault Agent config):\n%s\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "certkeeper convert: %d %s, %d %s not translated (each is a comment at the top, with the reason)\n",
		res.Certificates, plural(res.Certificates, "certificate", "certificates"), res.Skipped, plural(res.Skipped, "thing", "things"))
	return 0
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return strings.TrimSpace(many)
}
