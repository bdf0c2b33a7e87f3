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
// once` when no daemon answers on the control socket. Like Rotate, it
// holds the socket meanwhile, so no daemon starts and races it, and
// another once or rotate is told to wait. The error says the socket is
// taken.
func (d *Daemon) Once(ctx context.Context) (OnceReport, error) {
	stop, err := d.holdSocket(ctx, "once")
	if err != nil {
		return OnceReport{}, err
	}
	defer stop()
	d.prepareVault()
	defer d.closeVault()
	var r OnceReport
	r.Certificates = d.agent.Once(ctx)
	r.Bundles = d.trust.Once(ctx)
	r.Services = d.services.Flush(ctx)
	return r, nil
}

// Summary is r as `certkeeper once` prints it. A certificate or bundle
// whose files a failed service check rolled back is marked so: what its
// pass wrote is no longer on disk.
func (r OnceReport) Summary() control.OnceResponse {
	back := rolledBack(r.Services)
	out := control.OnceResponse{
		Certificates: certificateOutcomes(r.Certificates, back),
		Services:     serviceOutcomes(r.Services),
	}
	for _, o := range r.Bundles {
		b := control.BundleOutcome{Name: o.Name, RolledBack: back[services.BundleSource(o.Name)]}
		if o.Err != nil {
			b.Error = oneLine(o.Err.Error())
		} else {
			b.Written = len(o.Result.Written) > 0
			b.CAs = len(o.Result.CAs)
			for _, ca := range o.Result.CAs {
				if ca.CRLNumber != "" {
					b.CRLs++
				}
			}
		}
		out.Bundles = append(out.Bundles, b)
	}
	return out
}

// rolledBack maps each source whose files a failed check rolled back to
// what failed.
func rolledBack(outs []services.Outcome) map[string]string {
	back := map[string]string{}
	for _, o := range outs {
		for _, src := range o.RolledBack {
			back[src] = fmt.Sprintf("service %s failed its check: %s", o.Service, oneLine(o.Err.Error()))
		}
	}
	return back
}

func certificateOutcomes(outs []agent.Outcome, back map[string]string) []control.CertificateOutcome {
	var cs []control.CertificateOutcome
	for _, o := range outs {
		st := o.Status
		c := control.CertificateOutcome{Name: st.Name}
		if o.Err != nil {
			c.Error = st.LastError
			cs = append(cs, c)
			continue
		}
		res := o.Result
		c.Action, c.Reason, c.Serial = string(res.Action), res.Reason, res.Serial
		c.NotAfter, c.RenewAt = st.NotAfter, res.RenewAt
		if res.Action == agent.Restored {
			c.Restored = len(res.Written)
		}
		if res.Action != agent.Kept {
			// A pass that wrote nothing has nothing rolled back.
			c.RolledBack = back[services.CertificateSource(st.Name)]
		}
		cs = append(cs, c)
	}
	return cs
}

func serviceOutcomes(outs []services.Outcome) []control.ServiceOutcome {
	var ss []control.ServiceOutcome
	for _, o := range outs {
		s := control.ServiceOutcome{Service: o.Service, Result: o.Result}
		if o.Err != nil {
			s.Error = oneLine(o.Err.Error())
		}
		ss = append(ss, s)
	}
	return ss
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

// RotateReport is what Rotate did.
type RotateReport struct {
	Certificates []agent.Outcome
	Services     []services.Outcome
}

// Summary is r as `certkeeper rotate` prints it; see OnceReport.Summary.
func (r RotateReport) Summary() control.OnceResponse {
	return control.OnceResponse{
		Certificates: certificateOutcomes(r.Certificates, rolledBack(r.Services)),
		Services:     serviceOutcomes(r.Services),
	}
}

// Rotate renews the named certificates (all when none is named) now,
// each after a random wait within spread, without a daemon: `certkeeper
// rotate` when none answers on the control socket. It holds the socket
// meanwhile, which keeps a daemon from starting and racing this rotation,
// and tells another rotate to wait. The error is for the operator: the
// socket is taken, or a name is not configured.
func (d *Daemon) Rotate(ctx context.Context, names []string, spread time.Duration) (*RotateReport, error) {
	stop, err := d.holdSocket(ctx, "rotate")
	if err != nil {
		return nil, err
	}
	defer stop()

	d.log.Info("no certkeeper daemon answers; rotating here", "certificates", strings.Join(names, ","), "spread", spread.String())
	d.prepareVault()
	defer d.closeVault()
	outs, err := d.agent.RotateOnce(ctx, names, spread)
	if err != nil {
		return nil, err
	}
	return &RotateReport{Certificates: outs, Services: d.services.Flush(ctx)}, nil
}

// holdSocket claims the control socket for a one-shot command (what)
// working without a daemon, and answers rotate and once requests there
// with a refusal naming it, until stop.
func (d *Daemon) holdSocket(ctx context.Context, what string) (stop func(), err error) {
	sock, err := control.Listen(d.cfg.StateDir)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	busy := fmt.Errorf("a `certkeeper %s` (pid %d) is running now, without a daemon; try again when it is done", what, os.Getpid())
	go func() {
		defer close(done)
		control.Serve(sctx, sock, control.Handlers{
			Rotate: func(control.RotateRequest) (*control.RotateResponse, error) { return nil, busy },
			Once:   func(control.OnceRequest) (*control.OnceResponse, error) { return nil, busy },
		})
	}()
	return func() { cancel(); <-done }, nil
}
