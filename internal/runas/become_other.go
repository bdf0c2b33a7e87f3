//go:build !linux

package runas

import "errors"

// become is Linux-only: elsewhere root must run certkeeper as the owner
// of state_dir itself.
func become(Owner) (bool, error) {
	return false, errors.New("switching users is only supported on Linux: run this command as the owner of state_dir")
}
