package daemon

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/control"
	"github.com/certkeeper/certkeeper/services"
	"github.com/certkeeper/certkeeper/trust"
)

// OnceReport is what Once did, part by part, in config order.
type OnceReport struct {
	Certificates []agent.Outcome
	Bundles      []trust.Outcome
	// Services are the reloads the changes above called for.
	Services []services.Outcome
}

// Once makes every certificate valid and written, refreshes every trust
// bundle, then reloads the services whose files changed: `certkeeper
// once`.
func (d *Daemon) Once(ctx context.Context) OnceReport {
	d.prepareVault()
	defer d.closeVault()
	var r OnceReport
	r.Certificates = d.agent.Once(ctx)
	r.Bundles = d.trust.Once(ctx)
	r.Services = d.services.Flush(ctx)
	return r
}

// RotateReport is what Rotate did.
type RotateReport struct {
	Certificates []agent.Outcome
	Services     []services.Outcome
}

// Rotate renews the named certificates (all when none is named) now,
// each after a random wait within spread, without a daemon: `certkeeper
// rotate` when none answers on the control socket. It holds the socket
// meanwhile, which keeps a daemon from starting and racing this rotation,
// and tells another rotate to wait. The error is for the operator: the
// socket is taken, or a name is not configured.
func (d *Daemon) Rotate(ctx context.Context, names []string, spread time.Duration) (*RotateReport, error) {
	sock, err := control.Listen(d.cfg.StateDir)
	if err != nil {
		return nil, err
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go control.Serve(sctx, sock, control.Handlers{
		Rotate: func(control.RotateRequest) (*control.RotateResponse, error) {
			return nil, fmt.Errorf("a `certkeeper rotate` (pid %d) is rotating now, without a daemon; try again when it is done", os.Getpid())
		},
	})

	d.log.Info("no certkeeper daemon answers; rotating here", "certificates", strings.Join(names, ","), "spread", spread.String())
	d.prepareVault()
	defer d.closeVault()
	outs, err := d.agent.RotateOnce(ctx, names, spread)
	if err != nil {
		return nil, err
	}
	return &RotateReport{Certificates: outs, Services: d.services.Flush(ctx)}, nil
}
