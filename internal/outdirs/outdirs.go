// Package outdirs makes the missing directories that output files go
// into. Left to the file writer, they would be made silently and through
// the umask, and the packaged unit's UMask=0077 would make them 0700:
// owned by certkeeper's user, unreadable to the server that needs the
// certificate. So each is made here with an explicit mode: 0755, or 0750
// and the files' group when they have one (the group that may read them,
// such as www-data). The owner is the running user, who makes it; the
// caller logs what was made.
//
// The package touches directories only, never a file.
package outdirs

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/certkeeper/certkeeper/sinks"
)

// Mode is the mode of a directory made for files with group gid (-1:
// none).
func Mode(gid int) fs.FileMode {
	if gid >= 0 {
		return 0o750
	}
	return 0o755
}

// Files makes the missing directories of files, each with the group of
// the first file in it (gids[i] for paths[i]), and logs each it made on
// log: making one is a change on the host the operator should hear of.
func Files(paths []string, gids []int, log *slog.Logger) error {
	done := map[string]bool{}
	for i, p := range paths {
		dir := filepath.Dir(p)
		if done[dir] {
			continue
		}
		done[dir] = true
		made, err := Parents(p, gids[i])
		for _, d := range made {
			attrs := []any{"dir", d, "mode", fmt.Sprintf("%04o", Mode(gids[i])), "uid", os.Getuid()}
			if gids[i] >= 0 {
				attrs = append(attrs, "gid", gids[i])
			}
			log.Info("created a missing output directory", attrs...)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Parents makes the missing directories file goes in, with Mode(gid) and
// group gid when it is not -1, and returns those it made, outermost
// first. A directory that exists is left exactly as it is. It goes
// through sinks' walk, so a symlink or a directory a stranger could
// change on the way is refused before anything is made in it.
func Parents(file string, gid int) ([]string, error) {
	return sinks.MakeParents(file, Mode(gid), gid)
}
