package telemetry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/certkeeper/certkeeper/agent"
)

// ConfigHeader carries the absolute path of the running agent's config on
// /v1/status, so `certkeeper status` knows it reached its own agent and
// not another one on the same port.
const ConfigHeader = "Certkeeper-Config"

// Statuser is the agent's status; *agent.Agent is the real one.
type Statuser interface {
	Statuses() []agent.Status
}

// HandlerOptions build the endpoint's handler.
type HandlerOptions struct {
	Gatherer prometheus.Gatherer
	Status   Statuser
	// ConfigPath is the running config's absolute path.
	ConfigPath string
	// Listener, if set, adds the endpoint's own bind failures to /readyz.
	Listener *Listener
	Log      *slog.Logger
	Now      func() time.Time // default time.Now
}

// Handler serves /metrics, /healthz, /readyz and /v1/status.
func Handler(o HandlerOptions) http.Handler {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorLog:          promLog{o.Log},
		// A collector that fails must not hide every other metric.
		ErrorHandling: promhttp.ContinueOnError,
	}))
	// Alive is all /healthz says: a process that answers HTTP is not
	// deadlocked. Whether its certificates are good is /readyz.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		reasons := Unready(o.Status.Statuses(), o.Now())
		if o.Listener != nil {
			if r := o.Listener.Status().Unready(); r != "" {
				reasons = append(reasons, r)
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if len(reasons) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready:\n%s\n", strings.Join(reasons, "\n"))
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { serveStatus(o, w, r) })
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "certkeeper: /metrics /healthz /readyz /v1/status")
	})
	return mux
}

// promLog sends promhttp's errors (a failing collector) to slog.
type promLog struct{ log *slog.Logger }

func (p promLog) Println(v ...any) { p.log.Error("serving metrics", "error", fmt.Sprint(v...)) }

// ServeOptions run the endpoint.
type ServeOptions struct {
	Listen  string
	Handler http.Handler
	Log     *slog.Logger
	// RetryEvery is how long to wait before trying to listen again when
	// the address is taken; default 30s.
	RetryEvery time.Duration
	// OnListen, if set, is told the address actually bound (useful with
	// port 0).
	OnListen func(net.Addr)
	// Listener, if set, records each failed start (the address taken, the
	// web configuration not loadable yet) and the one that works.
	Listener *Listener
	// TLS, when set, is the endpoint's own TLS (ServerTLS): a certificate
	// certkeeper manages, client certificates from a trust bundle.
	TLS *EndpointTLS
	// WebConfigFile, when set, is an exporter-toolkit web configuration
	// (TLS from files, basic auth) the endpoint is served through.
	WebConfigFile string
	// Security describes TLS and authentication for the log line.
	Security string
}

// Serve runs the endpoint until ctx ends. An address it cannot bind (or a
// web configuration it cannot load yet) is logged, recorded in
// o.Listener and retried, never fatal: certificates matter more than
// metrics. Another process may answer on that address
// meanwhile, so the log and a failed scrape are not enough: the Listener
// is what `certkeeper status` and the metrics report.
func Serve(ctx context.Context, o ServeOptions) error {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.RetryEvery <= 0 {
		o.RetryEvery = 30 * time.Second
	}
	var ln net.Listener
	for {
		// A web configuration whose certificate files cannot be loaded
		// yet is waited for like an address that is taken.
		err := webConfigReady(o.WebConfigFile)
		if err != nil {
			o.Listener.notStarted(err, time.Now())
		} else if ln, err = net.Listen("tcp", o.Listen); err != nil {
			o.Listener.bindFailed(err, time.Now())
		}
		if err == nil {
			break
		}
		o.Log.Error("telemetry endpoint cannot listen; certificates are still kept fresh; retrying",
			"listen", o.Listen, "error", err, "retry_in", o.RetryEvery.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(o.RetryEvery):
		}
	}
	o.Listener.bound()
	handler := o.Handler
	if o.TLS != nil {
		ln = tls.NewListener(ln, o.TLS.Config())
		handler = o.TLS.Handler(handler)
	}
	security := o.Security
	if security == "" {
		security = "none (plain http)"
	}
	o.Log.Info("telemetry endpoint listening", "addr", ln.Addr().String(),
		"endpoints", "/metrics /healthz /readyz /v1/status", "security", security)
	if o.OnListen != nil {
		o.OnListen(ln.Addr())
	}
	srv := &http.Server{
		Handler: handler,
		// A client refused at the handshake (no certificate, a foreign
		// one) is the TLS configuration doing its job: debug, not noise
		// at every scrape of a misconfigured Prometheus.
		ErrorLog:          slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	errc := make(chan error, 1)
	go func() { errc <- serveOn(ln, srv, o) }()
	select {
	case err := <-errc:
		return fmt.Errorf("telemetry endpoint: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("stopping telemetry endpoint: %w", err)
	}
	return nil
}
