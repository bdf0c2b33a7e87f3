//go:build integration && faults

package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// TestRaftClusterFailover: two agents renew short-lived certificates from a
// 3-node Raft cluster, one given every node's address, one only a standby's.
// The leader is SIGKILLed, later started again, then the new leader steps
// down. Renewals go on after each election; neither agent logs in again
// (the token lives in Raft, and whatever a standby answers during an
// election is retried, not taken for an auth failure); the one with the
// list moves to a live node. A probe writing through a standby every 100ms
// records what Vault 1.21 really answers meanwhile: redirects to the dead
// leader until the new one is known (a 500 "local node not active but
// active cluster node not found" comes only while no leader is advertised
// at all; TestVaultServerErrorsThenSuccess injects that one).
func TestRaftClusterFailover(t *testing.T) {
	t.Parallel()
	c := vaulttest.NewCluster(t, vaulttest.ClusterOptions{})
	leader := c.ActiveNode(t, nil)
	root, err := c.Client(leader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vaulttest.Bootstrap(t.Context(), root, leader.Addr); err != nil {
		t.Fatal(err)
	}
	roleID, secretID, err := vaulttest.CreateAppRole(t.Context(), root, vaulttest.AppRoleOptions{Name: "certkeeper"})
	if err != nil {
		t.Fatal(err)
	}
	var standby *vaulttest.Node
	for _, n := range c.Nodes {
		if n != leader {
			standby = n
		}
	}

	start := func(name string, addrs []string) (*daemon, *env) {
		dir := filepath.Join(t.TempDir(), name)
		os.MkdirAll(dir, 0o700)
		e := &env{t: t, dir: dir}
		e.roleIDFile, e.secretIDFile = vaulttest.WriteCreds(t, dir, roleID, secretID)
		var quoted []string
		for _, a := range addrs {
			quoted = append(quoted, fmt.Sprintf("%q", a))
		}
		// Three 90s lives renewed about 6s after issuance: a request every
		// two seconds or so, so elections (1-3s here) meet some of them.
		var certs []string
		for _, n := range []string{"web", "api", "db"} {
			certs = append(certs, e.cert(n, vaulttest.RoleEC, `ttl = "60s"`, `renew_fraction = 0.4`, `renew_jitter = 0.05`))
		}
		cfg := e.writeRawConfig(e.vaultBlock("["+strings.Join(quoted, ", ")+"]", `timeout = "5s"`), certs...)
		return startDaemon(t, cfg), e
	}
	all, allEnv := start("all", c.Addrs())
	one, oneEnv := start("one", []string{standby.Addr})
	issued := `certificate issued and written`
	for _, d := range []*daemon{all, one} {
		d.WaitLog(issued, 6, 2*time.Minute)
	}
	during := func(what string, act func() *vaulttest.Node) {
		t.Helper()
		marks := []int{all.mark(), one.mark()}
		stopProbe := probe(t, standby.Addr, c.RootToken)
		at := time.Now()
		next := act()
		elected := time.Since(at)
		seen := stopProbe()
		for i, d := range []*daemon{all, one} {
			d.waitLogAfter(marks[i], issued, 6, 3*time.Minute)
		}
		t.Logf("%s: what a client writing through %s every 100ms got meanwhile: %s", what, standby.ID, seen)
		t.Logf("%s: %s active %v later; both agents renewed each certificate about twice since, %v after the event", what, next.ID, elected.Round(100*time.Millisecond), time.Since(at).Round(time.Second))
	}

	during("leader "+leader.ID+" SIGKILLed", func() *vaulttest.Node {
		if err := leader.Kill(); err != nil {
			t.Fatal(err)
		}
		return c.ActiveNode(t, leader)
	})
	during(leader.ID+" started again", func() *vaulttest.Node {
		if err := leader.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitVoters(t.Context(), 3); err != nil {
			t.Fatal(err)
		}
		return c.ActiveNode(t, nil)
	})
	during("active node stepped down", func() *vaulttest.Node {
		if _, err := c.StepDown(t.Context()); err != nil {
			t.Fatal(err)
		}
		return c.ActiveNode(t, nil)
	})

	for name, d := range map[string]*daemon{"all addresses": all, "one standby": one} {
		logs := d.Logs.String()
		failures := linesContaining(logs, "renewal failed")
		t.Logf("%s: %d renewals, %d logins, %d failed attempts (%d election 500s, %d redirects), %d address switches",
			name, d.Count(issued), d.Count(`logged in to vault`), len(failures),
			strings.Count(logs, "active cluster node not found"), strings.Count(logs, "vault answered 307"), d.Count(`switching to the next one`))
		if n := d.Count(`logged in to vault`); n != 1 {
			t.Errorf("%s: %d logins; elections must not cost a login", name, n)
		}
		if n := d.Count(`vault refused the token|vault_permission_denied`); n != 0 {
			t.Errorf("%s: an election was taken for an auth failure %d times", name, n)
		}
		for _, f := range failures {
			if !regexp.MustCompile(`vault answered (30[17]|5\d\d)|connection refused|connection reset|EOF|timeout|deadline`).MatchString(f) {
				t.Errorf("%s: a failure that is not a transient Vault error:\n%s", name, f)
			}
		}
		d.Stop()
	}
	if all.Count(`switching to the next one`) == 0 && leader == c.Nodes[0] {
		t.Error("the agent given every address never moved off the killed first node")
	}
	for _, n := range []string{"web", "api", "db"} {
		allEnv.checkPair(t, n)
		oneEnv.checkPair(t, n)
	}
}

// probe writes through addr every 100ms until stopped, without retries or
// redirects, and summarises the answers: what Vault really gives a client
// during an election.
func probe(t *testing.T, addr, token string) (stop func() string) {
	hc := &http.Client{Timeout: 2 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	done := make(chan struct{})
	result := make(chan string)
	go func() {
		counts := map[string]int{}
		var order []string
		for i := 0; ; i++ {
			select {
			case <-done:
				var parts []string
				for _, k := range order {
					parts = append(parts, fmt.Sprintf("%d x %s", counts[k], k))
				}
				result <- strings.Join(parts, ", ")
				return
			case <-time.After(100 * time.Millisecond):
			}
			req, _ := http.NewRequest(http.MethodPut, addr+"/v1/sys/policy/probe", strings.NewReader(`{"policy":"path \"p\" { capabilities = [\"read\"] }"}`))
			req.Header.Set("X-Vault-Token", token)
			key := ""
			resp, err := hc.Do(req)
			if err != nil {
				key = "no answer"
			} else {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				key = fmt.Sprint(resp.StatusCode)
				if resp.StatusCode >= 300 {
					key += " " + strings.TrimSpace(string(body))
				}
			}
			if counts[key] == 0 {
				order = append(order, key)
			}
			counts[key]++
		}
	}()
	return func() string {
		close(done)
		return <-result
	}
}
