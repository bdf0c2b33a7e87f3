package vaulttest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/vault/api"
)

// clusterReadyTimeout bounds forming a cluster: three processes, init,
// unseal and two Raft joins on a busy two-core machine.
const clusterReadyTimeout = 3 * time.Minute

// ClusterOptions shape a Raft cluster.
type ClusterOptions struct {
	// Nodes is the cluster size; default 3.
	Nodes int
	// Dir holds one directory per node; LaunchCluster makes a temporary one
	// when empty.
	Dir string
}

// Cluster is a Vault cluster with integrated storage (Raft) on loopback:
// every node has its own data directory, API port and cluster port, and
// joins the first node with retry_join. One Shamir key share unseals every
// node, so a node killed and started again rejoins on its own.
type Cluster struct {
	Nodes     []*Node
	RootToken string

	bin       string
	dir       string
	unsealKey string
}

// Node is one member of a Cluster.
type Node struct {
	ID          string
	Addr        string // http://127.0.0.1:port
	ClusterAddr string

	c       *Cluster
	port    int
	dir     string
	logPath string
	proc    *process
}

// LaunchCluster starts the nodes, initialises the first, unseals them all,
// waits until every node is a Raft voter and one is active, and returns.
// ctx bounds only the start-up.
func LaunchCluster(ctx context.Context, opts ClusterOptions) (*Cluster, error) {
	ctx, cancel := context.WithTimeout(ctx, clusterReadyTimeout)
	defer cancel()
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Dir == "" {
		if opts.Dir, err = os.MkdirTemp("", "vaultcluster-"); err != nil {
			return nil, fmt.Errorf("creating cluster dir: %w", err)
		}
	}
	c := &Cluster{bin: bin, dir: opts.Dir}
	for i := range opts.Nodes {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		n := &Node{
			ID:          fmt.Sprintf("node%d", i),
			Addr:        fmt.Sprintf("http://127.0.0.1:%d", port),
			ClusterAddr: fmt.Sprintf("https://127.0.0.1:%d", port+1),
			c:           c,
			port:        port,
			dir:         filepath.Join(opts.Dir, fmt.Sprintf("node%d", i)),
		}
		n.logPath = filepath.Join(n.dir, "vault.log")
		if err := os.MkdirAll(filepath.Join(n.dir, "raft"), 0o700); err != nil {
			return nil, fmt.Errorf("creating node dir: %w", err)
		}
		c.Nodes = append(c.Nodes, n)
	}
	for _, n := range c.Nodes {
		if err := n.writeConfig(); err != nil {
			return nil, err
		}
		if err := n.spawn(); err != nil {
			c.Kill()
			return nil, err
		}
	}
	if err := c.initFirst(ctx); err != nil {
		c.Kill()
		return nil, err
	}
	for _, n := range c.Nodes[1:] {
		if err := n.unsealUntilServing(ctx); err != nil {
			c.Kill()
			return nil, err
		}
	}
	if err := c.waitVoters(ctx, len(c.Nodes)); err != nil {
		c.Kill()
		return nil, err
	}
	return c, nil
}

// Dir is the directory holding every node's config, data and log.
func (c *Cluster) Dir() string { return c.dir }

// Addrs are the nodes' API addresses in node order.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Addr)
	}
	return out
}

// Client returns a root client for node n.
func (c *Cluster) Client(n *Node) (*api.Client, error) { return NewClient(n.Addr, c.RootToken) }

// Kill SIGKILLs every running node.
func (c *Cluster) Kill() {
	for _, n := range c.Nodes {
		n.Kill()
	}
}

// Stop stops every running node with SIGTERM.
func (c *Cluster) Stop() error {
	var errs []error
	for _, n := range c.Nodes {
		errs = append(errs, n.Stop())
	}
	return errors.Join(errs...)
}

// Active returns the node that answers sys/health as active, asking the
// running nodes; nil when none is (an election is under way).
func (c *Cluster) Active(ctx context.Context) *Node {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer hc.CloseIdleConnections()
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		if code, err := healthCode(ctx, hc, n.Addr); err == nil && code == http.StatusOK {
			return n
		}
	}
	return nil
}

// WaitActive waits until a node other than except (which may be nil) is
// active and returns it.
func (c *Cluster) WaitActive(ctx context.Context, except *Node) (*Node, error) {
	ctx, cancel := context.WithTimeout(ctx, clusterReadyTimeout)
	defer cancel()
	for {
		if n := c.Active(ctx); n != nil && n != except {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for an active node other than %v: %w", except, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// StepDown asks the active node to give up leadership and returns it once
// it has stopped being active. Vault moves Raft leadership on step-down, so
// another node usually takes over within a second or two.
func (c *Cluster) StepDown(ctx context.Context) (*Node, error) {
	old, err := c.WaitActive(ctx, nil)
	if err != nil {
		return nil, err
	}
	cl, err := c.Client(old)
	if err != nil {
		return nil, err
	}
	if err := cl.Sys().StepDownWithContext(ctx); err != nil {
		return nil, fmt.Errorf("step-down on %s: %w", old.ID, err)
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer hc.CloseIdleConnections()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if code, err := healthCode(ctx, hc, old.Addr); err == nil && code != http.StatusOK {
			return old, nil
		}
	}
	return nil, fmt.Errorf("step-down: %s is still active after 30s", old.ID)
}

// LogTail returns the last lines of every node's log, for failure messages.
func (c *Cluster) LogTail() string {
	var b strings.Builder
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, "--- %s (%s) ---\n%s\n", n.ID, n.logPath, tail(n.logPath, 0, logTailLines))
	}
	return b.String()
}

func (n *Node) String() string {
	if n == nil {
		return "none"
	}
	return n.ID
}

// Running reports whether the node's process is up.
func (n *Node) Running() bool { return n.proc != nil }

// Kill SIGKILLs the node, as a crash would.
func (n *Node) Kill() error {
	p := n.proc
	if p == nil {
		return nil
	}
	n.proc = nil
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("killing %s: %w", n.ID, err)
	}
	<-p.done
	return nil
}

// Stop sends SIGTERM and waits, killing the node after stopTimeout.
func (n *Node) Stop() error {
	p := n.proc
	if p == nil {
		return nil
	}
	n.proc = nil
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stopping %s: %w", n.ID, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("stopping %s: no exit within %s of SIGTERM, killed it", n.ID, stopTimeout)
}

// Start starts a stopped or killed node again on the same ports and
// unseals it, so it rejoins the cluster as a standby (or wins an election).
func (n *Node) Start(ctx context.Context) error {
	if n.proc != nil {
		return fmt.Errorf("starting %s: already running", n.ID)
	}
	ctx, cancel := context.WithTimeout(ctx, clusterReadyTimeout)
	defer cancel()
	deadline := time.Now().Add(rebindTimeout)
	for {
		if err := n.spawn(); err != nil {
			return err
		}
		err := n.unsealUntilServing(ctx)
		if err == nil {
			return nil
		}
		n.Kill()
		if !strings.Contains(tail(n.logPath, 0, logTailLines), "address already in use") || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (n *Node) writeConfig() error {
	var joins strings.Builder
	for _, other := range n.c.Nodes {
		if other != n {
			fmt.Fprintf(&joins, "  retry_join {\n    leader_api_addr = %q\n  }\n", other.Addr)
		}
	}
	// performance_multiplier 1 uses production Raft timings (about a second
	// to notice a dead leader) instead of the slow development default.
	cfg := fmt.Sprintf(`storage "raft" {
  path                   = %q
  node_id                = %q
  performance_multiplier = 1
%s}
listener "tcp" {
  address         = "127.0.0.1:%d"
  cluster_address = "127.0.0.1:%d"
  tls_disable     = true
}
api_addr      = %q
cluster_addr  = %q
disable_mlock = true
ui            = false
`, filepath.Join(n.dir, "raft"), n.ID, joins.String(), n.port, n.port+1, n.Addr, n.ClusterAddr)
	if err := os.WriteFile(filepath.Join(n.dir, "vault.hcl"), []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("writing %s config: %w", n.ID, err)
	}
	return nil
}

func (n *Node) spawn() error {
	p, err := spawn(n.c.bin, []string{"server", "-config=" + filepath.Join(n.dir, "vault.hcl")}, n.dir, n.logPath)
	if err != nil {
		return fmt.Errorf("%s: %w", n.ID, err)
	}
	n.proc = p
	return nil
}

// health polls the node until it answers sys/health at all and returns the
// code: 200 active, 429 standby, 501 not initialised, 503 sealed.
func (n *Node) health(ctx context.Context, hc *http.Client) (int, error) {
	for {
		p := n.proc
		if p == nil {
			return 0, fmt.Errorf("%s is not running", n.ID)
		}
		if code, err := healthCode(ctx, hc, n.Addr); err == nil {
			return code, nil
		}
		select {
		case <-p.done:
			return 0, fmt.Errorf("%s exited: %v\n%s", n.ID, p.err, tail(n.logPath, p.logOffset, logTailLines))
		case <-ctx.Done():
			return 0, fmt.Errorf("%s: waiting for sys/health: %w\n%s", n.ID, ctx.Err(), tail(n.logPath, p.logOffset, logTailLines))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// initFirst initialises the cluster through the first node, which then
// becomes the first leader.
func (c *Cluster) initFirst(ctx context.Context) error {
	first := c.Nodes[0]
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer hc.CloseIdleConnections()
	if _, err := first.health(ctx, hc); err != nil {
		return err
	}
	cl, err := NewClient(first.Addr, "")
	if err != nil {
		return err
	}
	resp, err := cl.Sys().InitWithContext(ctx, &api.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		return fmt.Errorf("initialising cluster through %s: %w", first.ID, err)
	}
	c.unsealKey, c.RootToken = resp.Keys[0], resp.RootToken
	if err := first.unsealUntilServing(ctx); err != nil {
		return err
	}
	_, err = c.WaitActive(ctx, nil)
	return err
}

// unsealUntilServing gives the node the key share and waits until it is
// active or a standby. A node joining through retry_join needs the key to
// decrypt the leader's challenge and stays sealed while the join runs in
// the background; unsealing it again in that window makes Vault start its
// standby loop twice, after which the node silently ignores sys/step-down.
// So the key is sent again only after a long quiet wait.
func (n *Node) unsealUntilServing(ctx context.Context) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer hc.CloseIdleConnections()
	cl, err := NewClient(n.Addr, "")
	if err != nil {
		return err
	}
	var sentAt time.Time
	for {
		code, err := n.health(ctx, hc)
		if err != nil {
			return err
		}
		if code == http.StatusOK || code == http.StatusTooManyRequests {
			return nil
		}
		if code == http.StatusServiceUnavailable && time.Since(sentAt) > 20*time.Second {
			// Errors here are expected while the join is in flight; the
			// next health check says whether it worked.
			cl.Sys().UnsealWithContext(ctx, n.c.unsealKey)
			sentAt = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("unsealing %s: %w\n%s", n.ID, ctx.Err(), tail(n.logPath, 0, logTailLines))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// WaitVoters waits until the Raft configuration lists want voters: after a
// killed node is started again, until it has caught up and votes.
func (c *Cluster) WaitVoters(ctx context.Context, want int) error {
	ctx, cancel := context.WithTimeout(ctx, clusterReadyTimeout)
	defer cancel()
	return c.waitVoters(ctx, want)
}

// waitVoters waits until the Raft configuration lists want voters.
func (c *Cluster) waitVoters(ctx context.Context, want int) error {
	for {
		if active := c.Active(ctx); active != nil {
			cl, err := c.Client(active)
			if err != nil {
				return err
			}
			sec, err := cl.Logical().ReadWithContext(ctx, "sys/storage/raft/configuration")
			if err == nil && sec != nil {
				if cfg, ok := sec.Data["config"].(map[string]any); ok {
					servers, _ := cfg["servers"].([]any)
					voters := 0
					for _, s := range servers {
						if m, ok := s.(map[string]any); ok && m["voter"] == true {
							voters++
						}
					}
					if voters >= want {
						return nil
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d raft voters: %w\n%s", want, ctx.Err(), c.LogTail())
		case <-time.After(500 * time.Millisecond):
		}
	}
}
