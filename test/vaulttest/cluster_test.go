//go:build integration && faults

package vaulttest

import (
	"testing"
	"time"
)

// TestClusterSurvivesLeaderLoss checks the harness itself: three Raft
// nodes elect a new leader when the leader is killed, the killed node
// rejoins when started again, and a step-down moves leadership.
func TestClusterSurvivesLeaderLoss(t *testing.T) {
	start := time.Now()
	c := NewCluster(t, ClusterOptions{})
	t.Logf("cluster of %d ready in %s", len(c.Nodes), time.Since(start).Round(time.Millisecond))
	leader := c.ActiveNode(t, nil)
	cl, err := c.Client(leader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Bootstrap(t.Context(), cl, leader.Addr); err != nil {
		t.Fatal(err)
	}

	killedAt := time.Now()
	if err := leader.Kill(); err != nil {
		t.Fatal(err)
	}
	next := c.ActiveNode(t, leader)
	t.Logf("%s took over from killed %s in %s", next.ID, leader.ID, time.Since(killedAt).Round(time.Millisecond))

	// Data written before the kill is there: the PKI survived.
	ncl, _ := c.Client(next)
	if _, err := ncl.Logical().WriteWithContext(t.Context(), IntMount+"/issue/"+RoleEC, map[string]any{"common_name": "a." + Domain}); err != nil {
		t.Fatalf("issuing after failover: %v", err)
	}

	if err := leader.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := c.waitVoters(t.Context(), 3); err != nil {
		t.Fatal(err)
	}
	steppedAt := time.Now()
	old, err := c.StepDown(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	third := c.ActiveNode(t, nil)
	t.Logf("%s active %s after %s stepped down", third.ID, time.Since(steppedAt).Round(time.Millisecond), old.ID)
}
