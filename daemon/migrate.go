package daemon

import (
	"log/slog"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/services"
	"github.com/certkeeper/certkeeper/trust"
)

// MigrateState brings a state_dir an older certkeeper left in its flat
// layout to the layout of internal/statedir (a directory per kind of
// state), before anything reads it. Every step is crash-safe and may be
// repeated, so a crash during it and a restart end in the new layout
// with nothing lost; on a state_dir already migrated it costs two
// directory reads. What it cannot migrate is logged and left where it is;
// a certificate whose record stays behind gets a new one at its pass. The agent goes first: with a certificate named
// "services", the old services.json may be its record.
func MigrateState(cfg *config.Config, log *slog.Logger) {
	moved, errs := agent.MigrateState(cfg)
	if ok, err := services.MigrateState(cfg); err != nil {
		errs = append(errs, err)
	} else if ok {
		moved = append(moved, "services.json")
	}
	errs = append(errs, trust.MigrateState(cfg)...)
	if len(moved) > 0 {
		log.Info("moved state to its per-kind directories in state_dir", "state_dir", cfg.StateDir, "files", len(moved))
	}
	for _, err := range errs {
		log.Error("cannot move this state to the current layout; it stays where it is", "error", err)
	}
}
