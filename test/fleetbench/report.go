//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// benchEnv is the machine and versions, for the report.
type benchEnv struct {
	Date, Commit          string
	CPU, Kernel           string
	Cores                 int
	GoVersion             string
	VaultVersion          string
	CertkeeperVersion     string
	LoadBefore, LoadAfter string
	InotifyLimit          int
}

func describeEnv(o *options) benchEnv {
	e := benchEnv{
		Date:       time.Now().UTC().Format("2006-01-02"),
		Cores:      runtime.NumCPU(),
		GoVersion:  runtime.Version(),
		LoadBefore: loadAvg(),
	}
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		e.Commit = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(out) > 0 {
		e.Commit += "-dirty"
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				e.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.Kernel = strings.TrimSpace(string(b))
	}
	if bin, err := vaulttest.Binary(); err == nil {
		if out, err := exec.Command(bin, "version").Output(); err == nil {
			// A Vault built from the module proxy reports its build time as now.
			e.VaultVersion, _, _ = strings.Cut(strings.TrimSpace(string(out)), ", built")
		}
	}
	if out, err := exec.Command(o.certkeeper, "version").Output(); err == nil {
		e.CertkeeperVersion = strings.TrimPrefix(strings.TrimSpace(string(out)), "certkeeper ")
	}
	return e
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// phase is one measured part of the run.
type phase struct {
	name   string
	spread time.Duration
	note   string

	start, asked, last time.Time
	killAt, electedAt  time.Time
	load               string
	issued             int
	reasons            map[string]int
	warns              []string
}

type runResult struct {
	opts     *options
	env      benchEnv
	t0       time.Time
	overhead [2]time.Duration // median sys/health: direct, through a proxy
	phases   []*phase
	records  []record
	outcome  finalCheck
	mu       sync.Mutex
	failures []string
}

// finalCheck is the end state.
type finalCheck struct {
	hostsOK, certsOK  int
	fileErrs          []string
	vaultNew, logged  int
	unexpected        []string // stored by Vault, never written by a host
	missingInVault    []string // written by a host, not stored by Vault
	duplicateLogged   int
	outsidePhases     int
	issue200AtProxies int // set by bench once the records are in
	// issue5xxAtProxies counts issue requests Vault answered with a 5xx.
	// Some of those it stored all the same: "leadership lost while
	// committing" means the Raft write may have landed after all, and
	// the client, told it failed, asks again. No client can tell.
	issue5xxAtProxies  int
	outsidePhaseDetail []string
}

func (r *runResult) failf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	logf("CHECK FAILED: %s", msg)
	r.mu.Lock()
	r.failures = append(r.failures, msg)
	r.mu.Unlock()
}

func (r *runResult) begin(name string, spread time.Duration, note string) *phase {
	ph := &phase{name: name, spread: spread, note: note, start: time.Now()}
	r.phases = append(r.phases, ph)
	logf("%s: start", name)
	return ph
}

// end closes a phase: the issuances and warnings logged since marks.
func (r *runResult) end(ph *phase, hosts []*host, marks [][2]int) {
	for _, h := range hosts {
		h.scan()
	}
	ph.load = loadAvg()
	ph.reasons = map[string]int{}
	for i, h := range hosts {
		for _, is := range h.issuedSince(marks[i][0]) {
			ph.issued++
			ph.reasons[is.Reason]++
			if is.At.After(ph.last) {
				ph.last = is.At
			}
		}
		for _, w := range h.warnsSince(marks[i][1]) {
			ph.warns = append(ph.warns, fmt.Sprintf("h%03d %s", h.i, w))
		}
	}
	want := len(hosts) * r.opts.certs
	if ph.issued != want {
		r.failf("%s: %d issuances logged, want exactly %d (one per certificate)", ph.name, ph.issued, want)
	}
	if ph.spread > 0 && ph.reasons["rotation requested"] != want {
		r.failf("%s: %d issuances for \"rotation requested\", want %d; reasons %v", ph.name, ph.reasons["rotation requested"], want, ph.reasons)
	}
}

// final checks files on disk and Vault's stored serials.
func (r *runResult) final(ctx context.Context, cluster *vaulttest.Cluster, hosts []*host, before map[string]bool) {
	now := time.Now()
	f := &r.outcome
	logged := map[string]int{}
	for _, h := range hosts {
		if !h.running() {
			r.failf("host %d is not running at the end", h.i)
			continue
		}
		f.hostsOK++
		_, err := h.checkFiles(now)
		f.certsOK += len(h.certs)
		if err != nil {
			for _, e := range strings.Split(err.Error(), "\n") {
				f.fileErrs = append(f.fileErrs, e)
				f.certsOK--
			}
		}
		for _, is := range h.issuedSince(0) {
			logged[is.Serial]++
			if !r.inPhase(is.At) {
				f.outsidePhases++
				f.outsidePhaseDetail = append(f.outsidePhaseDetail, fmt.Sprintf("h%03d %s %s at %s (%s)", h.i, is.Cert, is.Serial, is.At.Format(time.TimeOnly), is.Reason))
			}
		}
	}
	if len(f.fileErrs) > 0 {
		r.failf("%d certificates not valid on disk; first: %s", len(f.fileErrs), f.fileErrs[0])
	}
	f.logged = len(logged)
	for _, n := range logged {
		if n > 1 {
			f.duplicateLogged++
		}
	}
	active, err := cluster.WaitActive(ctx, nil)
	if err != nil {
		r.failf("final: %v", err)
		return
	}
	root, err := cluster.Client(active)
	if err != nil {
		r.failf("final: %v", err)
		return
	}
	after, err := listSerials(ctx, root)
	if err != nil {
		r.failf("final: %v", err)
		return
	}
	for s := range after {
		if before[s] {
			continue
		}
		f.vaultNew++
		if logged[s] == 0 {
			f.unexpected = append(f.unexpected, s)
		}
	}
	for s := range logged {
		if !after[s] {
			f.missingInVault = append(f.missingInVault, s)
		}
	}
	// Whether the certificates Vault stored and no host wrote are more
	// than its failed answers explain is decided once the door records
	// are in (bench).
	if len(f.missingInVault) > 0 {
		r.failf("%d serials the hosts wrote are not in Vault", len(f.missingInVault))
	}
	if f.duplicateLogged > 0 {
		r.failf("%d serials logged as written more than once", f.duplicateLogged)
	}
	if f.outsidePhases > 0 {
		r.failf("%d issuances outside the phases (renewals the run did not ask for): %s", f.outsidePhases, strings.Join(f.outsidePhaseDetail, "; "))
	}
}

func (r *runResult) inPhase(t time.Time) bool {
	for _, ph := range r.phases {
		if !t.Before(ph.start) && !t.After(ph.last.Add(time.Second)) {
			return true
		}
	}
	return false
}

// phaseStats is what the table shows for one phase.
type phaseStats struct {
	requests, issues     int
	byStatus             map[int]int
	byKind               map[string]int
	duration             time.Duration // start to the last issuance
	peak1s               float64       // busiest second, all requests
	binWidth             time.Duration
	peakBin              float64 // busiest bin of issue requests, per second
	even                 float64 // issues/spread
	meanInSpread         float64 // issue requests per second within the spread
	withinSpread         float64 // share of issue requests inside [start, start+spread+slack]
	predP50, predP99     float64 // simulated busiest bin, per second
	p50, p99, maxLat     time.Duration
	issueP50, issueP99   time.Duration
	failedAtDoor, redirs int
}

// stats are computed from the proxies' records.
func (r *runResult) stats(ph *phase) phaseStats {
	s := phaseStats{byStatus: map[int]int{}, byKind: map[string]int{}}
	end := ph.last.Add(time.Second)
	s.duration = ph.last.Sub(ph.start)
	var lat, issueLat []time.Duration
	var issueStarts []time.Time
	perSec := map[int64]int{}
	for _, rec := range r.records {
		if rec.Start.Before(ph.start) || rec.Start.After(end) {
			continue
		}
		s.requests++
		s.byStatus[rec.Status]++
		s.byKind[rec.kind()]++
		perSec[rec.Start.Unix()]++
		lat = append(lat, rec.Dur)
		switch {
		case rec.Status == 0 || rec.Status >= 500:
			s.failedAtDoor++
		case rec.Status == 307:
			s.redirs++
		}
		if rec.kind() == "issue" && rec.Status == 200 {
			s.issues++
			issueLat = append(issueLat, rec.Dur)
			issueStarts = append(issueStarts, rec.Start)
		}
	}
	for _, n := range perSec {
		s.peak1s = max(s.peak1s, float64(n))
	}
	s.p50, s.p99, s.maxLat = percentile(lat, 0.50), percentile(lat, 0.99), percentile(lat, 1)
	s.issueP50, s.issueP99 = percentile(issueLat, 0.50), percentile(issueLat, 0.99)
	if ph.spread > 0 {
		want := r.opts.n * r.opts.certs
		s.even = float64(want) / ph.spread.Seconds()
		s.binWidth = ph.spread / 10
		bins := make([]int, 10)
		inSpread, within := 0, 0
		for _, t := range issueStarts {
			off := t.Sub(ph.start)
			if off < ph.spread {
				inSpread++
				bins[int(off/s.binWidth)]++
			}
			// Slack: the time it took to ask every daemon, and one
			// request's worth of latency.
			if off < ph.spread+ph.asked.Sub(ph.start)+2*time.Second {
				within++
			}
		}
		s.meanInSpread = float64(inSpread) / ph.spread.Seconds()
		if len(issueStarts) > 0 {
			s.withinSpread = float64(within) / float64(len(issueStarts))
		}
		top := 0
		for _, b := range bins {
			top = max(top, b)
		}
		s.peakBin = float64(top) / s.binWidth.Seconds()
		p50, p99 := predictPeak(want, 10, 2000, uint64(len(r.phases)))
		s.predP50, s.predP99 = p50/s.binWidth.Seconds(), p99/s.binWidth.Seconds()
	}
	return s
}

// predictPeak simulates what the spread promises: want rotations each at
// a uniform random point of the window (agent.Rotate draws them so), and
// the busiest of bins equal bins. It returns the median and the 99th
// percentile of that busiest bin's count over rounds.
func predictPeak(want, bins, rounds int, seed uint64) (p50, p99 float64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	peaks := make([]float64, rounds)
	counts := make([]int, bins)
	for r := range rounds {
		clear(counts)
		for range want {
			counts[rng.IntN(bins)]++
		}
		top := 0
		for _, c := range counts {
			top = max(top, c)
		}
		peaks[r] = float64(top)
	}
	sort.Float64s(peaks)
	return peaks[rounds/2], peaks[rounds*99/100]
}

func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// checkSpread holds the spread to its promise: the mean rate inside the
// window is the even rate (within 20%), the busiest tenth of the window
// is no busier than the simulation's 99th percentile allows (plus 10%),
// and at least 95% of the requests fall inside the window. A phase with
// a killed leader only has to meet the last two: the requests refused
// during the election come back as retries.
func (r *runResult) checkSpread(ph *phase, s phaseStats) {
	if ph.spread == 0 {
		return
	}
	if ph.killAt.IsZero() && math.Abs(s.meanInSpread/s.even-1) > 0.20 {
		r.failf("%s: %.1f issue requests/s inside the spread, the even rate is %.1f/s (more than 20%% apart)", ph.name, s.meanInSpread, s.even)
	}
	if s.peakBin > 1.1*s.predP99 {
		r.failf("%s: busiest tenth of the spread ran at %.1f requests/s, above the simulation's 99th percentile %.1f/s", ph.name, s.peakBin, s.predP99)
	}
	if s.withinSpread < 0.95 {
		r.failf("%s: only %.0f%% of issue requests fell inside the spread", ph.name, 100*s.withinSpread)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Millisecond)) }

// write renders the report and the plot, named after the date and commit.
func (r *runResult) write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	base := fmt.Sprintf("%s-%s-n%d", r.env.Date, r.env.Commit, r.opts.n)
	png := base + ".png"
	if err := r.plot(filepath.Join(dir, png)); err != nil {
		return "", fmt.Errorf("plot: %w", err)
	}
	path := filepath.Join(dir, base+".md")
	return path, os.WriteFile(path, []byte(r.markdown(png)), 0o644)
}

func (r *runResult) markdown(png string) string {
	var b strings.Builder
	o, e := r.opts, r.env
	fmt.Fprintf(&b, "# Fleet run: %d certkeeper processes, 3-node Raft Vault\n\n", o.n)
	fmt.Fprintf(&b, "%s, commit %s, certkeeper %s, %s, Go %s.\n", e.Date, e.Commit, e.CertkeeperVersion, e.VaultVersion, e.GoVersion)
	fmt.Fprintf(&b, "%s, %d cores, Linux %s. Load average (1, 5, 15 min): %s before, %s after. "+
		"fs.inotify.max_user_instances %d (each certkeeper holds two: its config and its output files).\n\n",
		e.CPU, e.Cores, e.Kernel, e.LoadBefore, e.LoadAfter, e.InotifyLimit)
	fmt.Fprintf(&b, "Command: `bin/certkeeper-fleetbench -n %d -certs %d -ttl %s -spreads %s -kill-spread %s -settle %s`\n\n",
		o.n, o.certs, o.ttl, joinDurations(o.spreads), o.killSpread, o.settle)
	fmt.Fprintf(&b, "Each process is `certkeeper run` with its own config, state directory and AppRole secret_id, %d EC P-256 certificates (TTL %s) "+
		"written as key, certificate and CA file, and the three nodes' addresses (each host starting at a different node). "+
		"Requests are timed at each node's door by a reverse proxy: from the request's headers read to the answer's last byte written. "+
		"The proxy's own cost, measured before the run (median of 200 sys/health requests one at a time): %.2f ms direct, %.2f ms through the proxy.\n\n",
		o.certs, o.ttl, msf(r.overhead[0]), msf(r.overhead[1]))
	b.WriteString("| phase | load at end | certs | time to last cert (s) | requests (issue/login/token/other) | peak req/s (1 s) | even issue rate (/s) | mean issue rate in spread (/s) | busiest tenth (/s) | simulated busiest tenth p50/p99 (/s) | in spread | latency p50/p99/max (ms) | issue p50/p99 (ms) | refused or 5xx at the door | 307 |\n")
	b.WriteString("|---|---|---:|---:|---|---:|---:|---:|---:|---|---:|---|---|---:|---:|\n")
	for _, ph := range r.phases {
		s := r.stats(ph)
		r.checkSpread(ph, s)
		even, mean, peakBin, pred, within := "", "", "", "", ""
		if ph.spread > 0 {
			even = fmt.Sprintf("%.1f", s.even)
			mean = fmt.Sprintf("%.1f", s.meanInSpread)
			peakBin = fmt.Sprintf("%.1f", s.peakBin)
			pred = fmt.Sprintf("%.1f / %.1f", s.predP50, s.predP99)
			within = fmt.Sprintf("%.0f%%", 100*s.withinSpread)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %.1f | %d (%d/%d/%d/%d) | %.0f | %s | %s | %s | %s | %s | %s / %s / %s | %s / %s | %d | %d |\n",
			ph.name, ph.load, ph.issued, s.duration.Seconds(), s.requests, s.byKind["issue"], s.byKind["login"], s.byKind["token"], s.byKind["other"],
			s.peak1s, even, mean, peakBin, pred, within, ms(s.p50), ms(s.p99), ms(s.maxLat), ms(s.issueP50), ms(s.issueP99), s.failedAtDoor, s.redirs)
	}
	b.WriteString("\nThe even rate is certificates/spread; the busiest tenth is the most issue requests in any tenth of the spread, per second; " +
		"the simulated values are that busiest tenth when every rotation is a uniform random point of the spread (2,000 draws): " +
		"what `rotate -spread` promises. \"In spread\" is the share of the phase's issue requests that started within the spread " +
		"(plus the time taken to ask every daemon and 2 s).\n\n")
	for _, ph := range r.phases {
		if ph.note != "" {
			fmt.Fprintf(&b, "- **%s**: %s.\n", ph.name, ph.note)
		}
	}
	fmt.Fprintf(&b, "\n![requests per second and latency over the run](%s)\n\n", png)

	f := r.outcome
	b.WriteString("## Checks\n\n")
	fmt.Fprintf(&b, "- Processes running at the end and exiting 0 on SIGTERM: %d of %d.\n", f.hostsOK, o.n)
	fmt.Fprintf(&b, "- Certificates valid on disk at the end (pair with their key, chain to the CA file, the serial last logged): %d of %d.\n", f.certsOK, o.n*o.certs)
	fmt.Fprintf(&b, "- Serials Vault stored during the run: %d; written by the hosts: %d; stored but never written (issued twice): %d; written but not stored: %d; written twice: %d; "+
		"issue requests answered 200 at the doors: %d, answered 5xx (Vault may have stored them anyway): %d.\n",
		f.vaultNew, f.logged, len(f.unexpected), len(f.missingInVault), f.duplicateLogged, f.issue200AtProxies, f.issue5xxAtProxies)
	noWatch := 0
	for _, ph := range r.phases {
		for _, w := range ph.warns {
			if strings.Contains(w, "couldn't initialize inotify") {
				noWatch++
			}
		}
	}
	fmt.Fprintf(&b, "- File watches that could not be set up for lack of inotify instances (the daemon then checks its files at each pass only): %d.\n", noWatch)
	fmt.Fprintf(&b, "- Issuances outside the phases (renewals the run did not ask for): %d.\n", f.outsidePhases)
	if len(r.failures) == 0 {
		b.WriteString("- Every check passed.\n")
	} else {
		fmt.Fprintf(&b, "\n%d checks FAILED:\n\n", len(r.failures))
		for _, m := range r.failures {
			fmt.Fprintf(&b, "- %s\n", oneLine(m))
		}
	}
	b.WriteString("\n## What the daemons logged as warnings or errors, by phase\n\n")
	for _, ph := range r.phases {
		fmt.Fprintf(&b, "- %s: %d lines", ph.name, len(ph.warns))
		if len(ph.warns) > 0 {
			fmt.Fprintf(&b, "; by message: %s", countMessages(ph.warns))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n## Status codes at the door, by phase\n\n")
	for _, ph := range r.phases {
		s := r.stats(ph)
		var parts []string
		var codes []int
		for c := range s.byStatus {
			codes = append(codes, c)
		}
		sort.Ints(codes)
		for _, c := range codes {
			name := fmt.Sprint(c)
			if c == 0 {
				name = "dropped (node died)"
			}
			parts = append(parts, fmt.Sprintf("%s: %d", name, s.byStatus[c]))
		}
		fmt.Fprintf(&b, "- %s: %s\n", ph.name, strings.Join(parts, ", "))
	}
	return b.String()
}

// countMessages groups log lines by their msg and error text.
func countMessages(lines []string) string {
	counts := map[string]int{}
	for _, l := range lines {
		key := l
		if i := strings.Index(l, "msg="); i >= 0 {
			key = l[i:]
		}
		for _, drop := range []string{" cert=", " serial=", " accessor=", " next_attempt=", " from=", " to="} {
			if i := strings.Index(key, drop); i >= 0 {
				if j := strings.IndexByte(key[i+1:], ' '); j >= 0 {
					key = key[:i] + key[i+1+j:]
				} else {
					key = key[:i]
				}
			}
		}
		if len(key) > 200 {
			key = key[:200] + "..."
		}
		counts[key]++
	}
	keys := sortedKeys(counts)
	sort.SliceStable(keys, func(i, j int) bool { return counts[keys[i]] > counts[keys[j]] })
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d x `%s`", counts[k], strings.ReplaceAll(k, "`", "'")))
	}
	return strings.Join(parts, "; ")
}

func (r *runResult) summary() string {
	var b strings.Builder
	for _, ph := range r.phases {
		s := r.stats(ph)
		fmt.Fprintf(&b, "%-40s certs %5d  last after %6.1fs  requests %5d  peak %4.0f/s  issue p50 %5sms p99 %5sms  refused/5xx %d\n",
			ph.name, ph.issued, s.duration.Seconds(), s.requests, s.peak1s, ms(s.issueP50), ms(s.issueP99), s.failedAtDoor)
	}
	fmt.Fprintf(&b, "checks failed: %d", len(r.failures))
	return b.String()
}

func joinDurations(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		s = append(s, d.String())
	}
	return strings.Join(s, ",")
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 600 {
		s = s[:600] + "..."
	}
	return s
}
