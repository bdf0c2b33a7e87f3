//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"
)

// floorMain is the bare client floor: log in with AppRole, issue n
// certificates through vault/api at a fixed concurrency, write nothing,
// print "done", then wait for stdin to close. It is the cost Vault itself
// imposes on a client; no agent can go below it.
func floorMain(args []string) int {
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	addr := fs.String("addr", "", "vault address")
	roleIDFile := fs.String("role-id-file", "", "approle role_id file")
	secretIDFile := fs.String("secret-id-file", "", "approle secret_id file")
	n := fs.Int("n", 100, "certificates to issue")
	path := fs.String("path", "pki_int/issue/"+roleEC, "issue path")
	ttl := fs.String("ttl", ttl, "ttl to ask for")
	parallel := fs.Int("parallel", 16, "requests in flight")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := floor(*addr, *roleIDFile, *secretIDFile, *n, *path, *ttl, *parallel); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		return 1
	}
	fmt.Println("done")
	io.Copy(io.Discard, os.Stdin) // stay measurable until the harness is finished
	return 0
}

func floor(addr, roleIDFile, secretIDFile string, n int, path, ttl string, parallel int) error {
	cfg := api.DefaultConfig()
	cfg.Address = addr
	cfg.MaxRetries = 0
	if tr, ok := cfg.HttpClient.Transport.(*http.Transport); ok {
		// Keep as many idle connections as requests in flight, as an agent
		// tuned for this would.
		tr.MaxIdleConnsPerHost = parallel
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return err
	}
	roleID, err := os.ReadFile(roleIDFile)
	if err != nil {
		return err
	}
	auth, err := approle.NewAppRoleAuth(strings.TrimSpace(string(roleID)), &approle.SecretID{FromFile: secretIDFile})
	if err != nil {
		return err
	}
	ctx := context.Background()
	if _, err := c.Auth().Login(ctx, auth); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	work := make(chan int)
	errs := make(chan error, parallel)
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				sec, err := c.Logical().WriteWithContext(ctx, path, map[string]any{
					"common_name": commonName(i),
					"ttl":         ttl,
				})
				if err == nil && (sec == nil || sec.Data["certificate"] == nil) {
					err = errors.New("no certificate in the answer")
				}
				if err != nil {
					select {
					case errs <- fmt.Errorf("issuing %s: %w", commonName(i), err):
					default:
					}
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}
