package services

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/statedir"
	"github.com/certkeeper/certkeeper/sinks"
)

// MigrateState moves the services' state an older certkeeper kept at the
// top of state_dir (statedir.Legacy) to services/, crash-safely and as
// often as it is called (see sinks.Move). Run it after agent.MigrateState:
// with a certificate named "services", the old services.json may be that
// certificate's record, which the agent moves to certs/. It reports
// whether it moved the file.
func MigrateState(cfg *config.Config) (bool, error) {
	dir := statedir.Dir(cfg.StateDir)
	old, now := dir.Legacy().ServicesState(), dir.ServicesState()
	if err := sinks.Recover(dir.ServicesJournal(), []string{now, old}); err != nil {
		return false, fmt.Errorf("migrating the service states: %w", err)
	}
	data, err := sinks.ReadState(old)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("migrating the service states: %w", err)
	}
	var file stateFile
	if json.Unmarshal(data, &file) != nil || file.Version == 0 || file.Services == nil {
		return false, nil // not the services' state: a record the agent did not claim
	}
	if err := sinks.Move(dir.ServicesJournal(), old, now); err != nil {
		return false, fmt.Errorf("migrating the service states: %w", err)
	}
	return true, nil
}
