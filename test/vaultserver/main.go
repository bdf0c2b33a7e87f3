// Command vault is the real HashiCorp Vault server (and Vault Agent), built
// from a pinned release so that certkeeper's integration tests, demo and
// benchmarks run against the genuine article rather than a mock.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
