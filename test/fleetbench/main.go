//go:build linux

// Command fleetbench is what `make fleet-bench` runs: a fleet of real
// `certkeeper run` processes, each with its own config, AppRole secret_id,
// state directory and a handful of certificates, against a 3-node Raft
// Vault on loopback. It measures what Vault sees: the request rate over
// time and request latency, for a cold start of the whole fleet, a mass
// `rotate -spread` at several spreads, and the same with the Raft leader
// SIGKILLed halfway through; it checks that nothing failed and nothing
// was issued twice, and writes a Markdown report with a timeline plot to
// test/fleetbench/results/.
//
// Vault's side is measured by one HTTP reverse proxy in front of each
// node (see proxy.go for why not the audit log). The bench touches only
// its work directory, the results directory and the processes it starts.
package main

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/certkeeper/certkeeper/test/vaulttest"
)

const usage = `usage: fleetbench [flags]

Runs -n certkeeper daemons against a 3-node Raft Vault on loopback and
measures Vault's request rate and latency through a cold start, mass
rotations at each -spreads, and a rotation with the leader killed.
Run it from the repository root after building bin/certkeeper and
bin/vault (make fleet-bench does both).

`

type options struct {
	n          int
	certs      int
	ttl        time.Duration
	spreads    []time.Duration
	killSpread time.Duration
	settle     time.Duration
	startGap   time.Duration
	timeout    time.Duration
	out        string
	work       string
	keep       bool
	ownUser    bool
	certkeeper string
}

// quietLog swallows the proxies' http.Server errors (clients hanging up
// while a node is down are expected).
var quietLog = log.New(io.Discard, "", 0)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("fleetbench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, usage)
		fs.PrintDefaults()
	}
	var o options
	var spreads string
	fs.IntVar(&o.n, "n", 20, "certkeeper processes")
	fs.IntVar(&o.certs, "certs", 4, "certificates per process")
	fs.DurationVar(&o.ttl, "ttl", time.Hour, "certificate TTL; long enough that no renewal falls inside the run (renewal at 56-66% of it)")
	fs.StringVar(&spreads, "spreads", "30s,60s,120s", "spreads of the mass rotations, comma-separated")
	fs.DurationVar(&o.killSpread, "kill-spread", 60*time.Second, "spread of the rotation during which the leader is killed (0 skips it)")
	fs.DurationVar(&o.settle, "settle", 10*time.Second, "quiet time between phases")
	fs.DurationVar(&o.startGap, "start-gap", 0, "pause between starting two processes at the cold start (0: all at once)")
	fs.DurationVar(&o.timeout, "timeout", 15*time.Minute, "longest a phase may take")
	fs.StringVar(&o.out, "out", "test/fleetbench/results", "directory for the report and plot")
	fs.StringVar(&o.work, "work", "", "work directory (default: a new temporary one)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory")
	fs.StringVar(&o.certkeeper, "certkeeper", "bin/certkeeper", "certkeeper binary")
	fs.BoolVar(&o.ownUser, "own-user", true, "when root, run the fleet as a system user made for the run (and removed after), so its inotify instances do not come out of root's")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	for _, s := range strings.Split(spreads, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			fmt.Fprintf(os.Stderr, "fleetbench: bad spread %q\n", s)
			return 2
		}
		o.spreads = append(o.spreads, d)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, &o); err != nil {
		fmt.Fprintf(os.Stderr, "fleetbench: %v\n", err)
		return 1
	}
	return 0
}

// bench is one whole run; the checks that fail are in the report and
// make it return an error.
func bench(ctx context.Context, o *options) error {
	bin, err := filepath.Abs(o.certkeeper)
	if err != nil {
		return err
	}
	o.certkeeper = bin
	if o.work == "" {
		if o.work, err = os.MkdirTemp("", "fleetbench-"); err != nil {
			return err
		}
	}
	if !o.keep {
		defer os.RemoveAll(o.work)
	}
	env := describeEnv(o)
	logf("work directory %s; load average %s", o.work, env.LoadBefore)

	cluster, err := vaulttest.LaunchCluster(ctx, vaulttest.ClusterOptions{Dir: filepath.Join(o.work, "vault")})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	leader, err := cluster.WaitActive(ctx, nil)
	if err != nil {
		return err
	}
	root, err := cluster.Client(leader)
	if err != nil {
		return err
	}
	if _, err := vaulttest.Bootstrap(ctx, root, leader.Addr); err != nil {
		return err
	}
	roleID, _, err := vaulttest.CreateAppRole(ctx, root, vaulttest.AppRoleOptions{Name: "fleet", TokenTTL: "2h", TokenMaxTTL: "24h"})
	if err != nil {
		return err
	}
	before, err := listSerials(ctx, root)
	if err != nil {
		return err
	}

	proxies, err := newProxySet(cluster.Addrs())
	if err != nil {
		return err
	}
	defer proxies.Close()
	var addrs []string
	for _, p := range proxies.proxies {
		addrs = append(addrs, p.Addr)
	}

	hosts := make([]*host, o.n)
	for i := range hosts {
		// One secret_id per host, as each host of a fleet has its own.
		sec, err := root.Logical().WriteWithContext(ctx, "auth/approle/role/fleet/secret-id", nil)
		if err != nil {
			return fmt.Errorf("secret_id for host %d: %w", i, err)
		}
		secretID, _ := sec.Data["secret_id"].(string)
		if hosts[i], err = newHost(filepath.Join(o.work, "hosts"), i, addrs, roleID, secretID, o.certs, o.ttl); err != nil {
			return err
		}
	}
	var cred *syscall.Credential
	if o.ownUser && os.Geteuid() == 0 {
		name, c, remove, err := fleetUser()
		if err != nil {
			return err
		}
		defer remove()
		cred = c
		// The user must reach its own directories under the work directory.
		if err := os.Chmod(o.work, 0o711); err != nil {
			return err
		}
		if err := chownTree(filepath.Join(o.work, "hosts"), int(c.Uid), int(c.Gid)); err != nil {
			return err
		}
		logf("the fleet runs as %s (uid %d)", name, c.Uid)
	}
	env.InotifyLimit = inotifyLimit()
	defer func() {
		for _, h := range hosts {
			if h.cmd != nil && h.running() {
				h.cmd.Process.Kill()
			}
		}
	}()

	direct, proxied, err := proxyOverhead(ctx, leader.Addr, proxies.proxies[0].Addr)
	if leader != cluster.Nodes[0] {
		direct, proxied, err = proxyOverhead(ctx, cluster.Nodes[0].Addr, proxies.proxies[0].Addr)
	}
	if err != nil {
		return err
	}
	r := &runResult{opts: o, env: env, overhead: [2]time.Duration{direct, proxied}, t0: time.Now()}
	scanStop := scanLogs(hosts)
	defer scanStop()

	// (a) Cold start: every process at once, as after a fleet-wide deploy.
	ph := r.begin("cold start", 0, "all processes started at once, no files on disk")
	marks := markAll(hosts)
	for _, h := range hosts {
		if err := h.start(o.certkeeper, cred); err != nil {
			return err
		}
		if o.startGap > 0 {
			time.Sleep(o.startGap)
		}
	}
	logf("cold start: %d processes started in %s", o.n, time.Since(ph.start).Round(time.Millisecond))
	if err := waitIssued(ctx, hosts, marks, "", o.timeout); err != nil {
		r.failf("cold start: %v", err)
	}
	r.end(ph, hosts, marks)
	logf("cold start: every certificate on disk after %s; load %s", ph.last.Sub(ph.start).Round(100*time.Millisecond), ph.load)

	// (b) Mass rotations.
	for _, spread := range o.spreads {
		if ctx.Err() != nil {
			break
		}
		sleepCtx(ctx, o.settle)
		ph := r.begin(fmt.Sprintf("rotate -spread %s", spread), spread, "")
		if err := rotatePhase(ctx, r, ph, hosts, spread, nil); err != nil {
			r.failf("%s: %v", ph.name, err)
		}
	}

	// (c) The leader SIGKILLed halfway through a rotation.
	if o.killSpread > 0 && ctx.Err() == nil {
		sleepCtx(ctx, o.settle)
		ph := r.begin(fmt.Sprintf("rotate -spread %s, leader killed", o.killSpread), o.killSpread, "")
		var killed *vaulttest.Node
		var killedProxy *nodeProxy
		err := rotatePhase(ctx, r, ph, hosts, o.killSpread, func() {
			old, err := cluster.WaitActive(ctx, nil)
			if err != nil {
				r.failf("leader kill: %v", err)
				return
			}
			for i, n := range cluster.Nodes {
				if n == old {
					killedProxy = proxies.proxies[i]
				}
			}
			// The proxy goes with its node: connections drop and new ones
			// are refused, as from the dead node itself.
			killedProxy.Down()
			ph.killAt = time.Now()
			old.Kill()
			killed = old
			next, err := cluster.WaitActive(ctx, old)
			if err != nil {
				r.failf("leader kill: %v", err)
				return
			}
			ph.electedAt = time.Now()
			ph.note = fmt.Sprintf("%s SIGKILLed at +%.1fs; %s active %.1fs later", old.ID,
				ph.killAt.Sub(ph.start).Seconds(), next.ID, ph.electedAt.Sub(ph.killAt).Seconds())
			logf("%s", ph.note)
		})
		if err != nil {
			r.failf("%s: %v", ph.name, err)
		}
		if killed != nil {
			if err := killed.Start(ctx); err != nil {
				r.failf("restarting %s: %v", killed.ID, err)
			} else if err := killedProxy.Up(); err != nil {
				r.failf("%v", err)
			} else if err := cluster.WaitVoters(ctx, 3); err != nil {
				r.failf("%v", err)
			}
		}
	}

	// The end state: every process alive, every certificate valid on disk,
	// every serial Vault stored accounted for.
	time.Sleep(2 * time.Second)
	for _, h := range hosts {
		h.scan()
	}
	r.final(ctx, cluster, hosts, before)
	var stopErrs []error
	for _, h := range hosts {
		if !h.running() {
			stopErrs = append(stopErrs, fmt.Errorf("host %d exited during the run: %v", h.i, h.err))
			continue
		}
		if err := h.stop(); err != nil {
			stopErrs = append(stopErrs, err)
		}
	}
	if err := errors.Join(stopErrs...); err != nil {
		r.failf("processes: %v", err)
	}
	r.records = proxies.rec.all()
	for _, rec := range r.records {
		switch {
		case rec.kind() != "issue":
		case rec.Status == 200:
			r.outcome.issue200AtProxies++
		case rec.Status >= 500:
			r.outcome.issue5xxAtProxies++
		}
	}
	// A certificate a host never got is one Vault stored while telling
	// it the request failed; more than it answered 5xx would be a host
	// asking twice for what it had.
	f := &r.outcome
	if len(f.unexpected) > f.issue5xxAtProxies {
		r.failf("Vault stored %d certificates no host wrote (issued twice, or issued and lost), more than the %d issue requests it answered with a 5xx", len(f.unexpected), f.issue5xxAtProxies)
	}
	if f.vaultNew < f.issue200AtProxies || f.vaultNew > f.issue200AtProxies+f.issue5xxAtProxies {
		r.failf("%d issue requests answered 200 and %d 5xx at the doors, Vault stored %d new certificates", f.issue200AtProxies, f.issue5xxAtProxies, f.vaultNew)
	}
	env.LoadAfter = loadAvg()
	r.env = env
	path, err := r.write(o.out)
	if err != nil {
		return err
	}
	fmt.Println(r.summary())
	logf("report: %s", path)
	if len(r.failures) > 0 {
		return fmt.Errorf("%d checks failed (see the report)", len(r.failures))
	}
	return nil
}

// rotatePhase asks every daemon to rotate within spread, all at once, and
// waits until each has logged a rotation of every certificate. midway, if
// given, runs at half the spread.
func rotatePhase(ctx context.Context, r *runResult, ph *phase, hosts []*host, spread time.Duration, midway func()) error {
	marks := markAll(hosts)
	var wg sync.WaitGroup
	errs := make([]error, len(hosts))
	sem := make(chan struct{}, 32)
	for i, h := range hosts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = h.rotate(ctx, spread)
		}()
	}
	wg.Wait()
	ph.asked = time.Now()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	logf("%s: %d daemons asked in %s", ph.name, len(hosts), ph.asked.Sub(ph.start).Round(time.Millisecond))
	var mid sync.WaitGroup
	if midway != nil {
		mid.Add(1)
		go func() {
			defer mid.Done()
			if sleepCtx(ctx, time.Until(ph.start.Add(spread/2))) {
				midway()
			}
		}()
	}
	err := waitIssued(ctx, hosts, marks, "rotation requested", r.opts.timeout+spread)
	mid.Wait()
	r.end(ph, hosts, marks)
	logf("%s: every certificate rotated after %s; load %s", ph.name, ph.last.Sub(ph.start).Round(100*time.Millisecond), ph.load)
	return err
}

// scanLogs reads every host's log once a second until stopped.
func scanLogs(hosts []*host) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			for _, h := range hosts {
				h.scan()
			}
			select {
			case <-done:
				return
			case <-time.After(time.Second):
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

func markAll(hosts []*host) [][2]int {
	out := make([][2]int, len(hosts))
	for i, h := range hosts {
		out[i][0], out[i][1] = h.mark()
	}
	return out
}

// waitIssued waits until every host has logged an issuance of each of its
// certificates since its mark (with reason, if given).
func waitIssued(ctx context.Context, hosts []*host, marks [][2]int, reason string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var missing []string
		for i, h := range hosts {
			got := map[string]bool{}
			for _, is := range h.issuedSince(marks[i][0]) {
				if reason == "" || is.Reason == reason {
					got[is.Cert] = true
				}
			}
			if len(got) < len(h.certs) {
				missing = append(missing, fmt.Sprintf("h%03d(%d/%d)", h.i, len(got), len(h.certs)))
			}
			if !h.running() {
				return fmt.Errorf("host %d exited: %v\n%s", h.i, h.err, tailFile(h.log, 20))
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			if len(missing) > 10 {
				missing = append(missing[:10], "...")
			}
			return fmt.Errorf("after %s, still waiting for %s", timeout, strings.Join(missing, " "))
		}
		if !sleepCtx(ctx, time.Second) {
			return ctx.Err()
		}
	}
}

// fleetUser makes a system user for the fleet, as owner_test does for
// its tests, and returns a function that removes it.
func fleetUser() (string, *syscall.Credential, func(), error) {
	b := make([]byte, 3)
	crand.Read(b)
	name := "ckfleet" + hex.EncodeToString(b)
	if out, err := exec.Command("useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
		"--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		return "", nil, nil, fmt.Errorf("useradd %s: %w\n%s", name, err, out)
	}
	remove := func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			logf("userdel %s: %v %s", name, err, out)
		}
	}
	u, err := user.Lookup(name)
	if err != nil {
		remove()
		return "", nil, nil, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return name, &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, remove, nil
}

func chownTree(root string, uid, gid int) error {
	return filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

// inotifyLimit is the kernel's inotify instances per user: each
// certkeeper holds two (config and output files), so a fleet on one
// machine beyond half of it runs partly without file watches.
func inotifyLimit() int {
	b, err := os.ReadFile("/proc/sys/fs/inotify/max_user_instances")
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// proxyOverhead is the median time of 200 sys/health requests to a node
// directly and through its proxy, one at a time over a kept-alive
// connection: what the proxy adds to every latency it reports.
func proxyOverhead(ctx context.Context, node, proxy string) (direct, proxied time.Duration, err error) {
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}}
	defer hc.CloseIdleConnections()
	median := func(base string) (time.Duration, error) {
		var d []time.Duration
		for range 200 {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/sys/health?standbyok=true", nil)
			start := time.Now()
			resp, err := hc.Do(req)
			if err != nil {
				return 0, fmt.Errorf("measuring the proxy's overhead: %w", err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			d = append(d, time.Since(start))
		}
		return percentile(d, 0.5), nil
	}
	if direct, err = median(node); err != nil {
		return 0, 0, err
	}
	proxied, err = median(proxy)
	return direct, proxied, err
}

// listSerials is every serial pki_int has stored.
func listSerials(ctx context.Context, c *api.Client) (map[string]bool, error) {
	sec, err := c.Logical().ListWithContext(ctx, vaulttest.IntMount+"/certs")
	if err != nil {
		return nil, fmt.Errorf("listing %s/certs: %w", vaulttest.IntMount, err)
	}
	out := map[string]bool{}
	if sec == nil {
		return out, nil
	}
	keys, _ := sec.Data["keys"].([]any)
	for _, k := range keys {
		if s, ok := k.(string); ok {
			out[normSerial(s)] = true
		}
	}
	return out, nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s fleetbench: %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
