//go:build linux

package main

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// benchEnv describes the machine and binaries, for the results file.
type benchEnv struct {
	Date, Commit          string
	CPU, Kernel           string
	Cores                 int
	GoVersion             string
	VaultVersion          string
	CertkeeperVersion     string
	BaselineVersion       string
	BinarySize            int64
	Static                string
	LoadBefore, LoadAfter string
}

func describeEnv(o *options) benchEnv {
	e := benchEnv{
		Date:      time.Now().UTC().Format("2006-01-02"),
		Commit:    gitCommit(),
		CPU:       cpuModel(),
		Cores:     runtime.NumCPU(),
		GoVersion: runtime.Version(),
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.Kernel = strings.TrimSpace(string(b))
	}
	// A Vault built from the module proxy reports its build time as now.
	e.VaultVersion, _, _ = strings.Cut(firstLine(exec.Command(o.vault, "version").Output()), ", built")
	e.CertkeeperVersion = strings.TrimPrefix(firstLine(exec.Command(o.certkeeper, "version").Output()), "certkeeper ")
	if fi, err := os.Stat(o.certkeeper); err == nil {
		e.BinarySize = fi.Size()
	}
	e.Static = staticness(o.certkeeper)
	if o.baseline != "" {
		e.BaselineVersion = strings.TrimPrefix(firstLine(exec.Command(o.baseline, "version").Output()), "certkeeper ")
	}
	return e
}

func firstLine(b []byte, err error) string {
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line
}

// staticness says whether bin is a static executable: no ELF interpreter,
// no shared libraries, built with CGO_ENABLED=0.
func staticness(bin string) string {
	f, err := elf.Open(bin)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "dynamic (has an ELF interpreter)"
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return "dynamic (" + strings.Join(libs, ", ") + ")"
	}
	cgo := "?"
	if bi, err := buildinfo.ReadFile(bin); err == nil {
		for _, s := range bi.Settings {
			if s.Key == "CGO_ENABLED" {
				cgo = s.Value
			}
		}
	}
	return "static, CGO_ENABLED=" + cgo
}

func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "nogit"
	}
	sha := strings.TrimSpace(string(out))
	// Results files themselves do not make the tree dirty.
	st, err := exec.Command("git", "status", "--porcelain", "--", ".", ":!test/bench/results").Output()
	if err == nil && len(bytes.TrimSpace(st)) > 0 {
		sha += "-dirty"
	}
	return sha
}

// summary is the medians of one job's successful samples.
type summary struct {
	Job                      job
	Runs, Failed             int
	Elapsed, CPU             time.Duration
	PeakRSS, SteadyRSS       int64
	SteadyAnon               int64
	IdleCPU                  float64
	Requests, Issuance       int
	Conns                    int
	RestartAll, RestartIssue int
	// Public and RestartPublic count the reads PKI answers without a
	// token (requests.public).
	Public, RestartPublic int
	RestartReady          time.Duration
	Counted               bool
}

func summarize(samples []sample) []summary {
	var order []job
	by := map[job][]sample{}
	for _, s := range samples {
		if _, ok := by[s.Job]; !ok {
			order = append(order, s.Job)
		}
		by[s.Job] = append(by[s.Job], s)
	}
	var out []summary
	for _, j := range order {
		sum := summary{Job: j}
		var el, cpu, ready []time.Duration
		var peak, steady, anon []int64
		var idle []float64
		var req, iss, rall, riss, conns, pub, rpub []int
		for _, s := range by[j] {
			sum.Runs++
			if s.Err != "" {
				sum.Failed++
				continue
			}
			el = append(el, s.Elapsed)
			cpu = append(cpu, s.CPU)
			peak = append(peak, s.PeakRSS)
			steady = append(steady, s.SteadyRSS)
			anon = append(anon, s.SteadyAnon)
			idle = append(idle, s.IdleCPU)
			ready = append(ready, s.RestartReady)
			if s.Requests != nil {
				sum.Counted = true
				req = append(req, s.Requests.total())
				conns = append(conns, s.Conns)
				iss = append(iss, s.Requests.issuance())
				rall = append(rall, s.RestartRequests.total())
				riss = append(riss, s.RestartRequests.issuance())
				pub = append(pub, s.Requests.public())
				rpub = append(rpub, s.RestartRequests.public())
			}
		}
		sum.Elapsed, sum.CPU, sum.RestartReady = median(el), median(cpu), median(ready)
		sum.PeakRSS, sum.SteadyRSS, sum.SteadyAnon = median(peak), median(steady), median(anon)
		sum.IdleCPU = median(idle)
		sum.Requests, sum.Issuance, sum.Conns = median(req), median(iss), median(conns)
		sum.RestartAll, sum.RestartIssue = median(rall), median(riss)
		sum.Public, sum.RestartPublic = median(pub), median(rpub)
		out = append(out, sum)
	}
	return out
}

func median[T int | int64 | float64 | time.Duration](v []T) T {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func find(sums []summary, j job) (summary, bool) {
	for _, s := range sums {
		if s.Job == j && s.Runs > s.Failed {
			return s, true
		}
	}
	return summary{}, false
}

func renderReport(o *options, e benchEnv, samples []sample) string {
	sums := summarize(samples)
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	p("# certkeeper benchmark %s (%s)\n\n", e.Date, e.Commit)
	p("- machine: %s, %d cores, Linux %s\n", e.CPU, e.Cores, e.Kernel)
	p("- load average (1, 5, 15 min) before: %s; after: %s\n", e.LoadBefore, e.LoadAfter)
	p("- %s; bench built with %s\n", e.VaultVersion, e.GoVersion)
	p("- certkeeper %s: %s, %.1f MB (%d bytes)\n", e.CertkeeperVersion, e.Static, float64(e.BinarySize)/1e6, e.BinarySize)
	if o.baseline != "" {
		p("- certkeeper-base: certkeeper %s (%s), run exactly as certkeeper, for a before/after in this run\n", e.BaselineVersion, o.baseline)
	}
	p("- one dev Vault on loopback for every run (in memory, roles with `no_store=true`%s), TTL %s, %d rounds, medians shown\n",
		map[bool]string{true: ", file audit device on to count requests", false: ""}[o.audit], ttl, o.rounds)
	p("- certkeeper: `run`, `vault.max_parallel = %d`, writes key, cert and CA file per certificate (plus its state record), every file fsynced and renamed, directories fsynced\n", o.parallel)
	p("- Vault Agent: AppRole auto-auth, one `template` per certificate with `pkiCert` (Vault makes the key) rendering cert, CA and key into one file; its defaults otherwise\n")
	p("- floor: one AppRole login, then `pki_int/issue/<role>` through vault/api, %d in flight, nothing written\n", o.parallel)
	p("- time: process start until the last certificate set is on disk (inotify on the output directory; for the floor, until the last answer)\n")
	p("- CPU: user+system of the agent process when the last set landed; idle CPU: share of one core over %s, starting %s after the last set\n", o.idle, o.settle)
	p("- peak RSS: VmHWM at the end of the idle window; steady RSS: VmRSS then, with its anonymous part (RssAnon: heap and stacks, not the binary's own pages) in brackets\n")
	p("- restart: the agent is stopped and started again with its files in place; the column shows issuance requests (all requests)\n")
	p("- TCP conns: distinct client ports in Vault's audit log during the initial pass\n\n")

	p("## Medians\n\n")
	p("| tool | certs | key | time to disk (s) | CPU (s) | peak RSS (MB) | steady RSS (MB) (anon) | idle CPU (%%) | Vault requests (per cert) | TCP conns | restart: issuance (all) |\n")
	p("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range sums {
		if s.Runs == s.Failed {
			p("| %s | %d | %s | failed (%d runs) | | | | | | | |\n", s.Job.Tool, s.Job.N, keyName(s.Job.Key), s.Runs)
			continue
		}
		idle, restart := fmt.Sprintf("%.3f", s.IdleCPU*100), fmt.Sprintf("%d (%d)", s.RestartIssue, s.RestartAll)
		if s.Job.Tool == toolFloor {
			idle, restart = "n/a", "n/a"
		}
		req, conns := "not counted", "not counted"
		if s.Counted {
			req = fmt.Sprintf("%d (%.3f)", s.Requests, float64(s.Requests)/float64(s.Job.N))
			conns = fmt.Sprint(s.Conns)
		} else {
			restart = "not counted"
		}
		fail := ""
		if s.Failed > 0 {
			fail = fmt.Sprintf(" (%d of %d runs failed)", s.Failed, s.Runs)
		}
		p("| %s%s | %d | %s | %.2f | %.2f | %.1f | %.1f (%.1f) | %s | %s | %s | %s |\n", s.Job.Tool, fail, s.Job.N, keyName(s.Job.Key),
			s.Elapsed.Seconds(), s.CPU.Seconds(), mb(s.PeakRSS), mb(s.SteadyRSS), mb(s.SteadyAnon), idle, req, conns, restart)
	}

	p("\n## Ratios (same run, medians)\n\n")
	ns := append(slices.Clone(o.ns), o.extraNs...)
	slices.Sort(ns)
	ns = slices.Compact(ns)
	for _, key := range []string{"ec", "rsa"} {
		for _, n := range ns {
			ck, okC := find(sums, job{toolCertkeeper, n, key})
			va, okA := find(sums, job{toolAgent, n, key})
			fl, okF := find(sums, job{toolFloor, n, key})
			ci, okI := find(sums, job{toolCertkeeperIssue, n, key})
			cb, okB := find(sums, job{toolBaseline, n, key})
			if !okC {
				continue
			}
			var parts []string
			if okB {
				parts = append(parts, fmt.Sprintf("certkeeper / certkeeper-base: time %.2fx, CPU %.2fx, peak RSS %.2fx", ratio(ck.Elapsed, cb.Elapsed), ratio(ck.CPU, cb.CPU), ratio(ck.PeakRSS, cb.PeakRSS)))
				if okA {
					parts = append(parts, fmt.Sprintf("certkeeper-base / Vault Agent: time %.2fx, CPU %.2fx", ratio(cb.Elapsed, va.Elapsed), ratio(cb.CPU, va.CPU)))
				}
				if okF {
					parts = append(parts, fmt.Sprintf("certkeeper-base / floor: time %.2fx", ratio(cb.Elapsed, fl.Elapsed)))
				}
			}
			if okA {
				parts = append(parts, fmt.Sprintf("certkeeper / Vault Agent: time %.2fx, peak RSS %.3fx (1/%.0f), steady RSS %.3fx (1/%.0f), CPU %.2fx",
					ratio(ck.Elapsed, va.Elapsed), ratio(ck.PeakRSS, va.PeakRSS), ratio(va.PeakRSS, ck.PeakRSS),
					ratio(ck.SteadyRSS, va.SteadyRSS), ratio(va.SteadyRSS, ck.SteadyRSS), ratio(ck.CPU, va.CPU)))
			}
			if okF {
				parts = append(parts, fmt.Sprintf("certkeeper / floor: time %.2fx", ratio(ck.Elapsed, fl.Elapsed)))
				if okI {
					parts = append(parts, fmt.Sprintf("certkeeper issue mode / floor: time %.2fx", ratio(ci.Elapsed, fl.Elapsed)))
				}
			}
			if okA && okF {
				parts = append(parts, fmt.Sprintf("Vault Agent / floor: time %.2fx", ratio(va.Elapsed, fl.Elapsed)))
			}
			if okI {
				parts = append(parts, fmt.Sprintf("sign / issue mode: time %.2fx, CPU %.2fx", ratio(ck.Elapsed, ci.Elapsed), ratio(ck.CPU, ci.CPU)))
			}
			if ck.Counted {
				parts = append(parts, fmt.Sprintf("certkeeper Vault requests: %d for %d certificates (%d issuance + %d other)", ck.Requests, n, ck.Issuance, ck.Requests-ck.Issuance))
			}
			p("- N=%d, %s: %s\n", n, keyName(key), strings.Join(parts, "; "))
		}
	}
	growth(&b, o, sums)
	targets(&b, o, sums)

	p("\n## Raw samples\n\n")
	p("| round | tool | certs | key | time (s) | CPU (s) | peak RSS (MB) | steady RSS (MB) | steady anon (MB) | idle CPU (%%) | requests | TCP conns | restart requests | restart ready (s) | valid sets |\n")
	p("|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---:|\n")
	for _, s := range samples {
		if s.Err != "" {
			p("| %d | %s | %d | %s | FAILED: %s | | | | | | | | | | |\n", s.Round, s.Job.Tool, s.Job.N, keyName(s.Job.Key), oneLine(s.Err))
			continue
		}
		p("| %d | %s | %d | %s | %.3f | %.2f | %.1f | %.1f | %.1f | %.3f | %s | %d | %s | %.2f | %d |\n", s.Round, s.Job.Tool, s.Job.N, keyName(s.Job.Key),
			s.Elapsed.Seconds(), s.CPU.Seconds(), mb(s.PeakRSS), mb(s.SteadyRSS), mb(s.SteadyAnon), s.IdleCPU*100, s.Requests, s.Conns, s.RestartRequests, s.RestartReady.Seconds(), s.Valid)
	}
	p("\nReproduce: `make bench` (flags through `BENCH_FLAGS`, e.g. `make bench BENCH_FLAGS='-n 100 -rounds 1 -big 0'`; `bin/certkeeper-bench -h` lists them).\n")
	return b.String()
}

// growth reports memory per extra certificate, from the smallest and
// largest counts measured.
func growth(b *strings.Builder, o *options, sums []summary) {
	fmt.Fprintf(b, "\n## Memory per extra certificate\n\n")
	for _, tool := range []string{toolCertkeeper, toolAgent} {
		var pts []summary
		for _, s := range sums {
			if s.Job.Tool == tool && s.Job.Key == "ec" && s.Runs > s.Failed {
				pts = append(pts, s)
			}
		}
		slices.SortFunc(pts, func(a, b summary) int { return a.Job.N - b.Job.N })
		if len(pts) < 2 {
			continue
		}
		for i := 1; i < len(pts); i++ {
			lo, hi := pts[i-1], pts[i]
			dn := float64(hi.Job.N - lo.Job.N)
			fmt.Fprintf(b, "- %s, N=%d to %d: peak RSS %+.1f KB per certificate, steady RSS %+.1f KB per certificate\n", tool, lo.Job.N, hi.Job.N,
				float64(hi.PeakRSS-lo.PeakRSS)/dn/1024, float64(hi.SteadyRSS-lo.SteadyRSS)/dn/1024)
		}
		if tool == toolCertkeeper {
			lo, hi := pts[0], pts[len(pts)-1]
			per := float64(hi.PeakRSS-lo.PeakRSS) / float64(hi.Job.N-lo.Job.N)
			est := float64(hi.PeakRSS) + per*float64(10000-hi.Job.N)
			if hi.Job.N < 10000 {
				fmt.Fprintf(b, "- certkeeper at 10,000 certificates, extrapolated from N=%d..%d: peak about %.0f MB\n", lo.Job.N, hi.Job.N, est/(1<<20))
			}
		}
	}
}

// targets says plainly which of the issue's targets this run met.
func targets(b *strings.Builder, o *options, sums []summary) {
	fmt.Fprintf(b, "\n## Targets\n\n")
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	n := 1000
	if !contains(o.ns, n) && len(o.ns) > 0 {
		n = slices.Max(o.ns)
	}
	ck, okC := find(sums, job{toolCertkeeper, n, "ec"})
	va, okA := find(sums, job{toolAgent, n, "ec"})
	fl, okF := find(sums, job{toolFloor, n, "ec"})
	if okC && okA {
		fmt.Fprintf(b, "- peak RSS with %d certificates at most 1/10 of Vault Agent's: %s (%.1f MB vs %.1f MB, 1/%.1f)\n", n,
			verdict(ck.PeakRSS*10 <= va.PeakRSS), mb(ck.PeakRSS), mb(va.PeakRSS), ratio(va.PeakRSS, ck.PeakRSS))
		fmt.Fprintf(b, "- steady RSS with %d certificates at most 1/10 of Vault Agent's: %s (%.1f MB vs %.1f MB, 1/%.1f)\n", n,
			verdict(ck.SteadyRSS*10 <= va.SteadyRSS), mb(ck.SteadyRSS), mb(va.SteadyRSS), ratio(va.SteadyRSS, ck.SteadyRSS))
		fmt.Fprintf(b, "- time until %d certificates written at most 0.6x Vault Agent's: %s (%.2fs vs %.2fs, %.2fx)\n", n,
			verdict(ratio(ck.Elapsed, va.Elapsed) <= 0.6), ck.Elapsed.Seconds(), va.Elapsed.Seconds(), ratio(ck.Elapsed, va.Elapsed))
		fmt.Fprintf(b, "- CPU until %d certificates written no more than Vault Agent's: %s (%.2fs vs %.2fs, %.2fx)\n", n,
			verdict(ck.CPU <= va.CPU), ck.CPU.Seconds(), va.CPU.Seconds(), ratio(ck.CPU, va.CPU))
		fmt.Fprintf(b, "- idle CPU no more than Vault Agent's, no busy polling: %s (%.3f%% vs %.3f%% of a core over %s)\n",
			verdict(ck.IdleCPU <= va.IdleCPU), ck.IdleCPU*100, va.IdleCPU*100, o.idle)
	}
	if okC && okF {
		fmt.Fprintf(b, "- time within 1.5x of the bare floor (fsync included): %s (%.2fs vs %.2fs, %.2fx)\n",
			verdict(ratio(ck.Elapsed, fl.Elapsed) <= 1.5), ck.Elapsed.Seconds(), fl.Elapsed.Seconds(), ratio(ck.Elapsed, fl.Elapsed))
	}
	if big, ok := find(sums, job{toolCertkeeper, 10000, "ec"}); ok {
		fmt.Fprintf(b, "- 10,000 certificates to disk within 12 s: %s (measured once: %.1fs)\n", verdict(big.Elapsed <= 12*time.Second), big.Elapsed.Seconds())
		fmt.Fprintf(b, "- 10,000 certificates within 80 MB steady RSS: %s (measured once: peak %.1f MB, steady %.1f MB of which %.1f MB anonymous)\n",
			verdict(mb(big.SteadyRSS) <= 80), mb(big.PeakRSS), mb(big.SteadyRSS), mb(big.SteadyAnon))
	}
	if okC && ck.Counted {
		other := ck.Requests - ck.Issuance - ck.Public
		fmt.Fprintf(b, "- one issuance request per certificate plus auth: %s (%d issuance for %d certificates, %d other requests, and %d unauthenticated issuer/CRL reads of the CA rotation and revocation checks)\n",
			verdict(ck.Issuance == n && other <= 3), ck.Issuance, n, other, ck.Public)
		fmt.Fprintf(b, "- restart with valid files asks Vault for no certificate and nothing that needs a token: %s (%d issuance, %d requests in all, of which %d unauthenticated issuer/CRL reads)\n",
			verdict(ck.RestartIssue == 0 && ck.RestartAll == ck.RestartPublic), ck.RestartIssue, ck.RestartAll, ck.RestartPublic)
	}
}

func ratio[T int64 | time.Duration](a, b T) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func keyName(k string) string {
	if k == "rsa" {
		return "RSA 2048"
	}
	return "EC P-256"
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "|", "/")
	return strings.Join(strings.Fields(s), " ")
}
