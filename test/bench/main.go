//go:build linux

// Command bench is what `make bench` runs: certkeeper, Vault Agent and a
// bare vault/api client issuing the same certificates from one dev Vault,
// round by round, measuring time to disk, memory, CPU and the requests
// Vault saw. It prints a table of medians and writes it, with every raw
// number, to test/bench/results/<date>-<sha>.md, with a plot of time to
// disk and peak RSS against the number of certificates beside it (.svg).
//
// It only touches a temporary work directory, the results and plot files,
// and the processes it starts.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	ns            []int
	extraNs       []int
	big           int
	rounds        int
	parallel      int
	idle          time.Duration
	settle        time.Duration
	restartWindow time.Duration
	timeout       time.Duration
	audit         bool
	out           string
	work          string
	keep          bool
	profile       string
	tools         map[string]bool

	certkeeper string
	baseline   string
	vault      string
	self       string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "floor" {
		os.Exit(floorMain(os.Args[2:]))
	}
	os.Exit(benchMain(os.Args[1:]))
}

const usage = `usage: bench [flags]

Runs certkeeper, Vault Agent and a bare vault/api client against one dev
Vault and prints a table of medians. Run it from the repository root after
building bin/certkeeper and bin/vault (make bench does all of it).

`

func benchMain(args []string) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, usage)
		fs.PrintDefaults()
	}
	var o options
	nList := fs.String("n", "100,1000", "certificate counts for the main comparison (EC P-256, all three tools)")
	extraList := fs.String("extra-n", "100", "counts for the key-type and issue-mode comparison (RSA 2048, certkeeper issue mode); empty skips it")
	toolList := fs.String("tools", "certkeeper,certkeeper-issue,vault-agent,floor", "tools to run")
	fs.IntVar(&o.big, "big", 10000, "certkeeper alone, once, with this many certificates (0 skips)")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds per count; the table shows medians")
	fs.IntVar(&o.parallel, "parallel", 16, "requests in flight for certkeeper (vault.max_parallel) and the floor")
	fs.DurationVar(&o.idle, "idle", 10*time.Second, "idle window after all files are written")
	fs.DurationVar(&o.settle, "settle", 3*time.Second, "pause between the last file and the idle window")
	fs.DurationVar(&o.restartWindow, "restart-window", 5*time.Second, "how long a restarted Vault Agent is watched")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "base timeout per run (plus 100ms per certificate)")
	fs.BoolVar(&o.audit, "audit", true, "count requests through a file audit device on Vault")
	fs.StringVar(&o.out, "out", "test/bench/results", "directory for the results file (empty: do not write one)")
	fs.StringVar(&o.work, "work", "", "work directory (default: a new temporary directory)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (configs, logs, files)")
	fs.StringVar(&o.profile, "profile", "", "after the rounds, run certkeeper once more at the largest -n with -pprof and save CPU, heap and allocation profiles here")
	fs.StringVar(&o.certkeeper, "certkeeper", "bin/certkeeper", "certkeeper binary")
	fs.StringVar(&o.baseline, "baseline", "", "another certkeeper binary (say, built from main) run beside -certkeeper in the main comparison, as tool certkeeper-base, for a before/after in one run")
	fs.StringVar(&o.vault, "vault", "bin/vault", "vault binary (server and agent)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	if o.ns, err = ints(*nList); err != nil {
		fmt.Fprintln(os.Stderr, "bench: -n:", err)
		return 2
	}
	if o.extraNs, err = ints(*extraList); err != nil {
		fmt.Fprintln(os.Stderr, "bench: -extra-n:", err)
		return 2
	}
	o.tools = map[string]bool{}
	for _, t := range strings.Split(*toolList, ",") {
		o.tools[strings.TrimSpace(t)] = true
	}
	if o.baseline != "" {
		o.tools[toolBaseline] = true
	}
	if err := run(&o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(o *options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	paths := []*string{&o.certkeeper, &o.vault}
	if o.baseline != "" {
		paths = append(paths, &o.baseline)
	}
	for _, p := range paths {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
		if _, err := os.Stat(*p); err != nil {
			return fmt.Errorf("%w (run `make bench` from the repository root)", err)
		}
	}
	if o.self, err = os.Executable(); err != nil {
		return err
	}
	if o.work == "" {
		if o.work, err = os.MkdirTemp("", "certkeeper-bench-"); err != nil {
			return err
		}
		if !o.keep {
			defer os.RemoveAll(o.work)
		}
	}
	env := describeEnv(o)
	env.LoadBefore = loadAvg()
	say("machine: %s, %d cores, load average %s", env.CPU, env.Cores, env.LoadBefore)
	say("certkeeper %s (%s, %.1f MB); %s; %s", env.CertkeeperVersion, env.Static, float64(env.BinarySize)/1e6, env.VaultVersion, env.GoVersion)

	bv, err := startVault(ctx, o.work, o.audit)
	if err != nil {
		return err
	}
	defer bv.stop()
	say("dev Vault at %s (audit device: %v); work directory %s", bv.srv.Addr, o.audit, o.work)

	var samples []sample
	for _, n := range o.ns {
		jobs := filterJobs(o, []job{{toolCertkeeper, n, "ec"}, {toolBaseline, n, "ec"}, {toolAgent, n, "ec"}, {toolFloor, n, "ec"}})
		if contains(o.extraNs, n) {
			jobs = append(jobs, filterJobs(o, extraJobs(n))...)
		}
		samples = append(samples, rounds(ctx, o, bv, jobs)...)
	}
	for _, n := range o.extraNs {
		if !contains(o.ns, n) {
			samples = append(samples, rounds(ctx, o, bv, filterJobs(o, extraJobs(n)))...)
		}
	}
	for _, tool := range []string{toolCertkeeper, toolBaseline} {
		if o.big > 0 && o.tools[tool] && ctx.Err() == nil {
			j := job{tool, o.big, "ec"}
			say("%s (once)", j)
			s := runJob(ctx, o, bv, j, 1)
			report1(s)
			samples = append(samples, s)
		}
	}
	if o.profile != "" && ctx.Err() == nil {
		if err := profileRun(ctx, o, bv); err != nil {
			say("profiling: %v", err)
		}
	}
	env.LoadAfter = loadAvg()
	if ctx.Err() != nil {
		return ctx.Err()
	}

	text := renderReport(o, env, samples)
	fmt.Println()
	fmt.Print(text)
	if o.out != "" {
		path := filepath.Join(o.out, env.Date+"-"+env.Commit+".md")
		if err := os.MkdirAll(o.out, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			return err
		}
		say("wrote %s", path)
		svg := strings.TrimSuffix(path, ".md") + ".svg"
		if wrote, err := writePlot(svg, summarize(samples)); err != nil {
			return err
		} else if wrote {
			say("wrote %s", svg)
		}
	}
	return nil
}

// extraJobs show what local key generation costs and saves: issue vs sign
// mode, RSA 2048 vs EC P-256.
func extraJobs(n int) []job {
	return []job{
		{toolCertkeeperIssue, n, "ec"},
		{toolCertkeeper, n, "rsa"},
		{toolCertkeeperIssue, n, "rsa"},
		{toolAgent, n, "rsa"},
		{toolFloor, n, "rsa"},
	}
}

func filterJobs(o *options, jobs []job) []job {
	var out []job
	for _, j := range jobs {
		if o.tools[j.Tool] {
			out = append(out, j)
		}
	}
	return out
}

// rounds runs every job once per round, rotating the order each round so
// that drift in the machine's load does not always land on the same tool.
func rounds(ctx context.Context, o *options, bv *benchVault, jobs []job) []sample {
	var out []sample
	for r := range o.rounds {
		for k := range jobs {
			if ctx.Err() != nil {
				return out
			}
			j := jobs[(k+r)%len(jobs)]
			say("round %d/%d: %s", r+1, o.rounds, j)
			s := runJob(ctx, o, bv, j, r+1)
			report1(s)
			out = append(out, s)
		}
	}
	return out
}

func report1(s sample) {
	if s.Err != "" {
		say("  FAILED: %s", s.Err)
		return
	}
	say("  %.2fs to disk, cpu %.2fs, peak %.1f MB, steady %.1f MB (anon %.1f), idle %.3f%%, requests %d (%s) over %d connections, restart %s (ready after %.2fs)",
		s.Elapsed.Seconds(), s.CPU.Seconds(), mb(s.PeakRSS), mb(s.SteadyRSS), mb(s.SteadyAnon), s.IdleCPU*100,
		s.Requests.total(), s.Requests, s.Conns, s.RestartRequests, s.RestartReady.Seconds())
}

func contains(list []int, n int) bool {
	for _, v := range list {
		if v == n {
			return true
		}
	}
	return false
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func say(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}
