package daemon

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/control"
	"github.com/certkeeper/certkeeper/internal/statedir"
	"github.com/certkeeper/certkeeper/services"
	"github.com/certkeeper/certkeeper/trust"
	"github.com/certkeeper/certkeeper/vault"
)

// StatusReport is what `certkeeper status` shows.
type StatusReport struct {
	Certificates []agent.Status
	// Source says where Certificates came from: the running daemon, or
	// the files on disk and why.
	Source string
	// Services are the states the daemon last saved; ServicesErr says
	// why they could not be read.
	Services    []services.Status
	ServicesErr error
	// Bundles are read from the bundle files on disk.
	Bundles []trust.Status
	// Telemetry is the running daemon's telemetry endpoint; nil when no
	// daemon answered or the endpoint is off.
	Telemetry *control.TelemetryStatus
	// Auth is the running daemon's chain of Vault auth methods; nil when
	// no daemon answered.
	Auth []vault.AuthMethodStatus
}

// statusTimeout bounds the wait for the running daemon's answer.
const statusTimeout = 3 * time.Second

// Status asks the daemon running cfg over the control socket, which knows
// the last result and the next attempt, and falls back to reading the
// files on disk when none answers (or one runs another config file).
// Neither needs Vault.
func Status(ctx context.Context, cfg *config.Config, log *slog.Logger, now time.Time) StatusReport {
	var r StatusReport
	var running *control.StatusResponse
	r.Certificates, running, r.Source = certificateStatus(ctx, cfg, log, now)
	if running != nil {
		r.Telemetry, r.Auth = running.Telemetry, running.Auth
	}
	r.Services, r.ServicesErr = services.ReadStatus(cfg)
	r.Bundles = trust.DiskStatus(cfg, now)
	return r
}

// certificateStatus asks the running daemon, whose whole answer it also
// returns, or reads the files on disk (the answer is then nil).
func certificateStatus(ctx context.Context, cfg *config.Config, log *slog.Logger, now time.Time) ([]agent.Status, *control.StatusResponse, string) {
	sock := statedir.Dir(cfg.StateDir).ControlSocket()
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	resp, err := control.Status(ctx, cfg.StateDir, cfg.Path)
	if err == nil {
		return resp.Certificates, resp, "from the running agent on " + sock
	}
	log.Debug("no running agent answered; reading the files on disk", "error", err)
	var other *control.OtherConfigError
	if errors.As(err, &other) {
		return agent.DiskStatus(cfg, now), nil, "read from disk: " + other.Error()
	}
	return agent.DiskStatus(cfg, now), nil, "read from disk (no running agent answered on " + sock + ")"
}
