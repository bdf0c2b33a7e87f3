package vaulttest

import "testing"

// NewCluster launches a Raft cluster for the test and stops it in cleanup,
// logging every node's last lines when the test failed.
func NewCluster(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	c, err := LaunchCluster(t.Context(), opts)
	if err != nil {
		t.Fatalf("launching vault cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("vault cluster logs:\n%s", c.LogTail())
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stopping vault cluster: %v", err)
		}
	})
	return c
}

// ActiveNode waits for an active node other than except (nil: any) and
// fails the test if none appears.
func (c *Cluster) ActiveNode(t testing.TB, except *Node) *Node {
	t.Helper()
	n, err := c.WaitActive(t.Context(), except)
	if err != nil {
		t.Fatalf("%v\n%s", err, c.LogTail())
	}
	return n
}
