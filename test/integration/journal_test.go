//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// plant writes a crash journal naming renames, as whoever may write
// state_dir could, owned by uid.
func plant(t *testing.T, journal string, uid int, renames ...[2]string) {
	t.Helper()
	var entries []map[string]string
	for _, r := range renames {
		entries = append(entries, map[string]string{"from": r[0], "to": r[1]})
	}
	data, _ := json.Marshal(entries)
	if err := os.WriteFile(journal, data, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chown(journal, uid, uid)
}

// TestPlantedJournalRootOnce: the state_dir owner (the certkeeper user)
// plants a journal renaming its own file over root's. Root's `once`
// switches to the owner first, and the replay refuses the journal on its
// own: it names the file it would have replaced and its owner, and
// nothing is renamed.
func TestPlantedJournalRootOnce(t *testing.T) {
	s := newOwnerSetup(t, "24h")
	if stdout, stderr, code := cktest.Run(t, s.bin, cleanEnv(), "once", "-config", s.cfg); code != 0 {
		t.Fatalf("first once exited %d:\n%s\n%s", code, stdout, stderr)
	}
	victim := filepath.Join(s.dir, "victim")
	os.WriteFile(victim, []byte("root's\n"), 0o644)
	evil := filepath.Join(s.out, "evil")
	os.WriteFile(evil, []byte("the owner's\n"), 0o644)
	os.Chown(evil, s.uid, s.gid)
	journal := filepath.Join(s.state, "certs", "web.journal")
	plant(t, journal, s.uid, [2]string{evil, victim})

	stdout, stderr, code := cktest.Run(t, s.bin, cleanEnv(), "once", "-config", s.cfg)
	want := fmt.Sprintf("web: FAILED: refusing to replay the crash journal %s (owned by uid %d (%s)): it renames %s (owned by uid %d (%s)) over %s (owned by uid 0 (root))",
		journal, s.uid, s.owner, evil, s.uid, s.owner, victim)
	if code == 0 || !strings.Contains(stdout, want) || !strings.Contains(stdout, "nothing was renamed") {
		t.Errorf("once with a planted journal: exit %d, want %q:\n%s\n%s", code, want, stdout, stderr)
	}
	if got, _ := os.ReadFile(victim); string(got) != "root's\n" {
		t.Errorf("root's file now holds %q", got)
	}
	if _, err := os.Stat(evil); err != nil {
		t.Error("the planted file was moved")
	}
}

// TestPlantedJournalStaysRoot: with state_dir root's, `once` stays root,
// so only the replay's own checks stand between a journal and any file on
// the machine. A root-owned journal renaming a file over another outside
// the set is refused; a journal another user owns is refused even when
// the rename it names is one certkeeper's writes make.
func TestPlantedJournalStaysRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: the test is about what root does with a journal")
	}
	e := newEnv(t, vaulttest.Options{})
	cfg := e.writeConfig(e.cert("web", vaulttest.RoleEC))
	if out, errOut, code := once(t, cfg); code != 0 {
		t.Fatalf("first once: %d %s %s", code, out, errOut)
	}
	journal := filepath.Join(e.dir, "state", "certs", "web.journal")
	key := filepath.Join(e.dir, "web.key")
	keyBytes, _ := os.ReadFile(key)

	victim, evil := filepath.Join(e.dir, "victim"), filepath.Join(e.dir, "evil")
	os.WriteFile(victim, []byte("precious\n"), 0o644)
	os.WriteFile(evil, []byte("planted\n"), 0o644)
	plant(t, journal, 0, [2]string{evil, victim})
	out, _, code := once(t, cfg)
	if code == 0 || !regexp.MustCompile(`web: FAILED: refusing to replay the crash journal `+regexp.QuoteMeta(journal)+` \(owned by uid 0 \(root\)\): it renames `+
		regexp.QuoteMeta(evil)+` \(owned by uid 0 \(root\)\) over `+regexp.QuoteMeta(victim)+` \(owned by uid 0 \(root\)\)`).MatchString(out) {
		t.Errorf("root-owned journal outside the set: exit %d:\n%s", code, out)
	}
	if got, _ := os.ReadFile(victim); string(got) != "precious\n" {
		t.Errorf("the file outside the set now holds %q", got)
	}

	// Within the set, but not certkeeper's journal.
	tmp := filepath.Join(e.dir, ".web.key.certkeeper-tmp-1")
	os.WriteFile(tmp, []byte("a planted key\n"), 0o600)
	plant(t, journal, 65534, [2]string{tmp, key})
	out, _, code = once(t, cfg)
	if code == 0 || !strings.Contains(out, "web: FAILED: not replaying the crash journal: refusing to read "+journal+": it is owned by uid 65534") {
		t.Errorf("journal owned by another user: exit %d:\n%s", code, out)
	}
	if got, _ := os.ReadFile(key); string(got) != string(keyBytes) {
		t.Error("the key was replaced by a journal certkeeper did not write")
	}
}
