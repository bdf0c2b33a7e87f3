package services

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/notice"
)

// budgeted is shell(...) with a reload budget, whose reload also records
// when it ran (Unix seconds, one per line).
func budgeted(dir, name string, interval time.Duration) config.Service {
	s := shell(dir, name)
	s.Settle = 50 * time.Millisecond
	s.MinReloadInterval = interval
	s.Reload = []string{"sh", "-c", "date +%s.%N >> " + filepath.Join(dir, name+".reloads")}
	return s
}

func (f *fixture) reloadTimes(name string) []time.Time {
	data, _ := os.ReadFile(filepath.Join(f.dir, name+".reloads"))
	var out []time.Time
	for _, line := range strings.Fields(string(data)) {
		sec, err := strconv.ParseFloat(line, 64)
		if err != nil {
			f.t.Fatalf("reload time %q: %v", line, err)
		}
		out = append(out, time.Unix(0, int64(sec*1e9)))
	}
	return out
}

var rotated = notice.Notice{Kind: notice.Certificate, Name: "web", Reason: notice.Rotation, Urgent: true}

// TestBudgetMergesRoutineChanges: routine changes that keep coming are
// merged into one reload per min_reload_interval, and no reload comes
// sooner than the interval after the one before.
func TestBudgetMergesRoutineChanges(t *testing.T) {
	const interval = time.Second
	f := newFixture(t)
	f.cfg.Services = []config.Service{budgeted(f.dir, "nginx", interval)}
	f.cfg.Certificates[0].Notify = []string{"nginx"}
	f.m = New(Options{Config: f.cfg, Backoff: fastBackoff, Observer: f.obs})
	f.run()

	// The first routine change has no reload before it to wait for.
	f.m.Changed(f.cfg.Certificates[0], f.write("1"), renewed)
	waitFor(t, "the first reload", func() bool { return f.lines("nginx.reloads") == 1 })
	// Then a change every 100ms for 2.5 intervals: 25 changes.
	start := time.Now()
	for i := 0; time.Since(start) < 5*interval/2; i++ {
		f.m.Changed(f.cfg.Certificates[0], f.write("r"+strconv.Itoa(i)), renewed)
		time.Sleep(100 * time.Millisecond)
	}
	// Backlog too: a reload that ends as a change arrives may report
	// Pending false after the change set it (see reported).
	waitFor(t, "the last change to be loaded", func() bool { st := f.status("nginx"); return !st.Pending && st.Backlog == 0 })
	times := f.reloadTimes("nginx")
	// 2.5 intervals after the first reload allow two more at most, and the
	// last change (at most 1 interval after the one before) one more.
	if len(times) > 4 {
		t.Errorf("%d reloads for 25 routine changes in 2.5 intervals, want at most 4", len(times))
	}
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < interval {
			t.Errorf("reload %d came %v after the one before, within min_reload_interval %v", i+1, gap, interval)
		}
	}
	if got := f.onDisk(); !strings.HasPrefix(got, "KEYr") {
		t.Errorf("files hold %s", got)
	}
	if st := f.status("nginx"); st.Backlog != 0 || !st.HeldUntil.IsZero() {
		t.Errorf("after the last reload: backlog %d held until %v, want none", st.Backlog, st.HeldUntil)
	}
	if got := f.obs.reasonsSeen(); len(got) != len(times) || got[0] != "nginx:renewal:false" {
		t.Errorf("reload reasons %v, want one routine renewal per reload (%d)", got, len(times))
	}
}

// TestUrgentChangeSkipsBudget: with an hour's budget, a routine change
// after a reload waits (and shows as backlog), and an urgent one takes
// it along at once.
func TestUrgentChangeSkipsBudget(t *testing.T) {
	f := newFixture(t)
	f.cfg.Services = []config.Service{budgeted(f.dir, "nginx", time.Hour)}
	f.cfg.Certificates[0].Notify = []string{"nginx"}
	f.obs = &recorder{}
	f.m = New(Options{Config: f.cfg, Backoff: fastBackoff, Observer: f.obs})
	f.run()

	f.m.Changed(f.cfg.Certificates[0], f.write("1"), renewed)
	waitFor(t, "the first reload", func() bool { return f.lines("nginx.reloads") == 1 })
	last := f.reloadTimes("nginx")[0]
	for i := range 3 {
		f.m.Changed(f.cfg.Certificates[0], f.write("2"+strconv.Itoa(i)), renewed)
	}
	waitFor(t, "the backlog to show", func() bool { return f.status("nginx").Backlog == 3 })
	st := f.status("nginx")
	if want := last.Add(time.Hour); st.HeldUntil.Before(want.Add(-time.Second)) || st.HeldUntil.After(want.Add(time.Second)) {
		t.Errorf("held until %v, want an hour after the last reload (%v)", st.HeldUntil, want)
	}
	if !slices.Contains(f.obs.backlogSeen(), "nginx:3") {
		t.Errorf("backlog metric saw %v, want nginx:3", f.obs.backlogSeen())
	}
	time.Sleep(300 * time.Millisecond) // several settle windows
	if n := f.lines("nginx.reloads"); n != 1 {
		t.Fatalf("%d reloads: routine changes did not wait for the budget", n)
	}

	f.m.Changed(f.cfg.Certificates[0], f.write("3"), rotated)
	waitFor(t, "the urgent change's reload", func() bool { return f.lines("nginx.reloads") == 2 })
	waitFor(t, "the backlog to clear", func() bool { return f.status("nginx").Backlog == 0 })
	if got := f.onDisk(); got != "KEY3/CERT3" {
		t.Errorf("files hold %s", got)
	}
	if got := f.obs.reasonsSeen(); !slices.Equal(got, []string{"nginx:renewal:false", "nginx:rotation:true"}) {
		t.Errorf("reload reasons %v", got)
	}
}

// TestDeadlineBoundsBudget: a routine change whose deadline comes before
// the budget opens (the loaded certificate's safe margin, a CRL about to
// expire) is loaded at its deadline.
func TestDeadlineBoundsBudget(t *testing.T) {
	f := newFixture(t)
	f.cfg.Services = []config.Service{budgeted(f.dir, "nginx", time.Hour)}
	f.cfg.Certificates[0].Notify = []string{"nginx"}
	f.m = New(Options{Config: f.cfg, Backoff: fastBackoff, Observer: f.obs})
	f.run()
	f.m.Changed(f.cfg.Certificates[0], f.write("1"), renewed)
	waitFor(t, "the first reload", func() bool { return f.lines("nginx.reloads") == 1 })

	refresh := notice.Notice{Kind: notice.TrustBundle, Name: "clients", Reason: notice.TrustRefresh, Deadline: time.Now().Add(700 * time.Millisecond)}
	f.m.Changed(f.cfg.Certificates[0], f.write("2"), refresh)
	waitFor(t, "the reload at the deadline", func() bool { return f.lines("nginx.reloads") == 2 })
	if times := f.reloadTimes("nginx"); times[1].Before(refresh.Deadline.Add(-100 * time.Millisecond)) {
		t.Errorf("reloaded at %v, before the deadline %v: the budget did not hold it", times[1], refresh.Deadline)
	}
}

// TestNoBudgetReloadsEachChange: without min_reload_interval the same
// routine changes each get their reload after settle (the comparison
// the budget is measured against).
func TestNoBudgetReloadsEachChange(t *testing.T) {
	f := newFixture(t)
	f.cfg.Services = []config.Service{budgeted(f.dir, "nginx", 0)}
	f.cfg.Certificates[0].Notify = []string{"nginx"}
	f.m = New(Options{Config: f.cfg, Backoff: fastBackoff, Observer: f.obs})
	f.run()
	for i := range 3 {
		f.m.Changed(f.cfg.Certificates[0], f.write(strconv.Itoa(i)), renewed)
		waitFor(t, "reload "+strconv.Itoa(i+1), func() bool { return f.lines("nginx.reloads") == i+1 })
	}
}

func (r *recorder) reasonsSeen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reasons)
}

func (r *recorder) backlogSeen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.backlog)
}
