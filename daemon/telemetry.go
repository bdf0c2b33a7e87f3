package daemon

import (
	"context"
	"fmt"
	"strings"

	"github.com/certkeeper/certkeeper/telemetry"
)

// secureTelemetry sets how the endpoint is protected: the web
// configuration file, and TLS with a certificate of this config whose
// clients are verified against one of its trust bundles.
func (d *Daemon) secureTelemetry(so *telemetry.ServeOptions) {
	t := d.cfg.Telemetry
	so.WebConfigFile = t.WebConfigFile
	var says []string
	if t.TLSCertificate != "" {
		to := telemetry.TLSOptions{KeyPairs: d.agent, Certificate: t.TLSCertificate, ClientNames: t.ClientNames, Log: d.log}
		says = append(says, fmt.Sprintf("tls with certificate %q", t.TLSCertificate))
		for _, tb := range d.cfg.TrustBundles {
			if tb.Name == t.ClientTrustBundle {
				to.ClientCAFile, to.ClientCRLFile = tb.CAFile, tb.CRLFile
				says = append(says, fmt.Sprintf("client certificates from trust bundle %q", tb.Name))
			}
		}
		if len(t.ClientNames) > 0 {
			says = append(says, "named "+strings.Join(t.ClientNames, ", "))
		}
		so.TLS = telemetry.ServerTLS(to)
	}
	if t.WebConfigFile != "" {
		says = append(says, "web config "+t.WebConfigFile)
	}
	so.Security = strings.Join(says, "; ")
}

// startTextfile keeps the file for node_exporter's textfile collector,
// written after every change the metrics hear of.
func (d *Daemon) startTextfile(ctx context.Context, g *group) {
	t := d.cfg.Telemetry
	if t.Textfile == "" {
		return
	}
	tf := telemetry.NewTextfile(telemetry.TextfileOptions{Path: t.Textfile, Interval: t.TextfileInterval, Gatherer: d.registry, Log: d.log})
	d.metrics.OnChange(tf.Changed)
	d.log.Info("writing metrics for node_exporter's textfile collector", "path", t.Textfile, "interval", t.TextfileInterval.String())
	g.start(ctx, tf.Run, nil)
}
