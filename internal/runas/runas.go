// Package runas makes every command that reads or writes certkeeper's state
// run as the one user who owns state_dir (see "Who runs what" in the
// README). Started as root while state_dir belongs to someone else, the
// process becomes that user; started as anyone else who is not the owner,
// it refuses, naming the owner. It touches nothing but the process's own
// credentials and the environment variables that name its user.
package runas

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"slices"
	"strconv"
	"syscall"
)

// Action is what a command must do before it touches state_dir.
type Action int

const (
	// Stay: the process already is the owner, or state_dir does not exist
	// yet (whoever runs creates it, and owns it from then on).
	Stay Action = iota
	// Switch: root runs while state_dir belongs to another user, who must
	// be the one to write everything.
	Switch
	// Refuse: another user runs; writing as it would leave files the owner
	// cannot read, and reading as it would trust files it does not own.
	Refuse
)

func (a Action) String() string {
	switch a {
	case Stay:
		return "stay"
	case Switch:
		return "switch"
	}
	return "refuse"
}

// Facts are everything the decision rests on.
type Facts struct {
	// EUID is the effective uid of the process.
	EUID int
	// DirExists says whether state_dir exists; DirUID is its owner then.
	DirExists bool
	DirUID    int
}

// Decide says what a command must do, from the facts alone.
func Decide(f Facts) Action {
	switch {
	case !f.DirExists || f.DirUID == f.EUID:
		return Stay
	case f.EUID == 0:
		return Switch
	}
	return Refuse
}

// NotOwnerError is the refusal: the message names the user to run as.
type NotOwnerError struct {
	StateDir string
	UID      int
	// Name is the owner's user name, empty when /etc/passwd has none.
	Name string
}

func (e *NotOwnerError) Error() string {
	who := fmt.Sprintf("uid %d", e.UID)
	if e.Name != "" {
		who = fmt.Sprintf("%s (uid %d)", e.Name, e.UID)
	}
	as := "as root"
	if e.UID != 0 {
		name := e.Name
		if name == "" {
			name = fmt.Sprintf("uid %d", e.UID)
		}
		as = "as " + name + " or as root"
	}
	return fmt.Sprintf("state_dir %s belongs to %s: run this command %s", e.StateDir, who, as)
}

// Owner is a user to become, with the groups it has when it logs in.
type Owner struct {
	Name   string
	UID    int
	GID    int
	Groups []int
	Home   string
}

// StateOwner makes the process run as the owner of stateDir, or says why it
// must not go on. Call it once, right after the config is loaded and
// before anything in state_dir, Vault or any output is touched: the switch
// applies to every thread, but files opened before it stay open as root.
func StateOwner(stateDir string, log *slog.Logger) error {
	facts := Facts{EUID: os.Geteuid()}
	info, err := os.Stat(stateDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("checking who owns state_dir: %w", err)
	default:
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("checking who owns state_dir %s: no owner information", stateDir)
		}
		facts.DirExists, facts.DirUID = true, int(st.Uid)
	}
	switch Decide(facts) {
	case Stay:
		return nil
	case Refuse:
		name := ""
		if u, err := user.LookupId(strconv.Itoa(facts.DirUID)); err == nil {
			name = u.Username
		}
		return &NotOwnerError{StateDir: stateDir, UID: facts.DirUID, Name: name}
	}
	owner, err := lookup(facts.DirUID)
	if err != nil {
		return fmt.Errorf("state_dir %s belongs to uid %d: %w", stateDir, facts.DirUID, err)
	}
	keptKill, err := become(owner)
	if err != nil {
		return fmt.Errorf("switching to %s (uid %d), the owner of state_dir %s: %w", owner.Name, owner.UID, stateDir, err)
	}
	// Children (check and reload commands) see the user they run as, as
	// they would under the unit's User=.
	os.Setenv("HOME", owner.Home)
	os.Setenv("USER", owner.Name)
	os.Setenv("LOGNAME", owner.Name)
	// root's TMPDIR is root's (libpam-tmpdir makes it /tmp/user/0, 0700):
	// the owner could not write the files it makes for check and reload
	// commands there. The unit sets none either, so /tmp it is.
	os.Unsetenv("TMPDIR")
	log.Info("running as the owner of state_dir", "state_dir", stateDir, "user", owner.Name,
		"uid", owner.UID, "gid", owner.GID, "groups", owner.Groups, "from_uid", facts.EUID, "cap_kill", keptKill)
	return nil
}

// lookup reads the user's entry and its groups from /etc/passwd and
// /etc/group (the release binary is static, so os/user reads the files).
// A uid without an entry is refused rather than guessed at: its primary
// group and groups are unknown.
func lookup(uid int) (Owner, error) {
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return Owner{}, fmt.Errorf("looking up the user to run as: %w", err)
	}
	o := Owner{Name: u.Username, UID: uid, Home: u.HomeDir}
	if o.GID, err = strconv.Atoi(u.Gid); err != nil {
		return Owner{}, fmt.Errorf("group of %s: %q is not a number", u.Username, u.Gid)
	}
	ids, err := u.GroupIds()
	if err != nil {
		return Owner{}, fmt.Errorf("groups of %s: %w", u.Username, err)
	}
	o.Groups = []int{o.GID}
	for _, s := range ids {
		g, err := strconv.Atoi(s)
		if err != nil {
			return Owner{}, fmt.Errorf("groups of %s: %q is not a number", u.Username, s)
		}
		if !slices.Contains(o.Groups, g) {
			o.Groups = append(o.Groups, g)
		}
	}
	return o, nil
}
