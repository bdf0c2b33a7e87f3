package telemetry

import (
	"bufio"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The example alerts, dashboard and README are what operators copy; a
// metric renamed here without them would break their alerts silently.

var metricRef = regexp.MustCompile(`\bcertkeeper_[a-z0-9_]+`)

// referencedMetrics are the certkeeper metric names in text, with the
// _bucket/_sum/_count series of histograms folded into the histogram.
func referencedMetrics(text string) []string {
	var out []string
	for _, m := range metricRef.FindAllString(text, -1) {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(m, suffix); ok && isHistogram(base) {
				m = base
			}
		}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out
}

func isHistogram(name string) bool {
	for _, d := range catalog {
		if d.name == name {
			return d.kind == "histogram"
		}
	}
	return false
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAlertsUseDefinedMetrics(t *testing.T) {
	text := readFile(t, "../examples/prometheus/alerts.yml")
	refs := referencedMetrics(text)
	if len(refs) < 8 {
		t.Fatalf("alerts.yml references only %v", refs)
	}
	for _, m := range refs {
		if !slices.Contains(MetricNames(), m) {
			t.Errorf("alerts.yml uses %s, which certkeeper does not export", m)
		}
	}
}

// Every alert has a promtool case where it fires and one where it does not.
func TestEveryAlertIsUnitTested(t *testing.T) {
	var alerts []string
	for _, m := range regexp.MustCompile(`(?m)^\s*- alert: (\S+)`).FindAllStringSubmatch(readFile(t, "../examples/prometheus/alerts.yml"), -1) {
		alerts = append(alerts, m[1])
	}
	firing, quiet := map[string]bool{}, map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(readFile(t, "../examples/prometheus/alerts_test.yml")))
	current := ""
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if name, ok := strings.CutPrefix(line, "alertname: "); ok {
			current = name
			continue
		}
		switch {
		case current != "" && line == "exp_alerts: []":
			quiet[current] = true
			current = ""
		case current != "" && line == "exp_alerts:":
			firing[current] = true
			current = ""
		}
	}
	for _, a := range alerts {
		if !firing[a] || !quiet[a] {
			t.Errorf("alert %s: firing case %v, not-firing case %v; want both in alerts_test.yml", a, firing[a], quiet[a])
		}
	}
	for _, want := range []string{"ExpiringSoon", "RenewalFailing", "PastRenewalPoint", "CRLAboutToGoStale", "ReloadFailing", "ServedCertificateDiffers", "Down"} {
		if !slices.ContainsFunc(alerts, func(a string) bool { return strings.HasSuffix(a, want) }) {
			t.Errorf("no alert for %s", want)
		}
	}
}

// dashboard is the part of Grafana's model the checks need.
type dashboard struct {
	Inputs []struct {
		Name, Type, PluginID string
	} `json:"__inputs"`
	Requires []struct {
		Type, ID string
	} `json:"__requires"`
	SchemaVersion int     `json:"schemaVersion"`
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string     `json:"name"`
			Datasource datasource `json:"datasource"`
			Definition string     `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type datasource struct{ Type, UID string }

type panel struct {
	ID         int        `json:"id"`
	Type       string     `json:"type"`
	Title      string     `json:"title"`
	Datasource datasource `json:"datasource"`
	GridPos    struct{ H, W, X, Y int }
	Targets    []struct {
		Expr       string     `json:"expr"`
		RefID      string     `json:"refId"`
		Datasource datasource `json:"datasource"`
	} `json:"targets"`
}

// Grafana imports a dashboard exported "for sharing externally": its data
// source is an input the importer picks, every panel and variable uses
// that input, panel types are declared, and ids and layout are sane.
func TestDashboardImports(t *testing.T) {
	text := readFile(t, "../examples/grafana/certkeeper.json")
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(text))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("certkeeper.json is not valid JSON: %v", err)
	}
	if d.UID != "certkeeper" || d.Title != "certkeeper" || d.SchemaVersion < 36 {
		t.Errorf("uid %q, title %q, schemaVersion %d", d.UID, d.Title, d.SchemaVersion)
	}
	if len(d.Inputs) != 1 || d.Inputs[0].Name != "DS_PROMETHEUS" || d.Inputs[0].Type != "datasource" || d.Inputs[0].PluginID != "prometheus" {
		t.Errorf("__inputs = %+v, want one prometheus data source input DS_PROMETHEUS", d.Inputs)
	}
	required := map[string]bool{}
	for _, r := range d.Requires {
		required[r.Type+"/"+r.ID] = true
	}
	want := datasource{Type: "prometheus", UID: "${DS_PROMETHEUS}"}
	ids := map[int]bool{}
	queries := 0
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: grid position %+v does not fit the 24-column grid", p.Title, g)
		}
		if p.Type == "row" {
			continue
		}
		if !required["panel/"+p.Type] {
			t.Errorf("panel %q: type %q is not in __requires", p.Title, p.Type)
		}
		if p.Datasource != want {
			t.Errorf("panel %q: datasource %+v, want %+v", p.Title, p.Datasource, want)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] || tg.Datasource != want {
				t.Errorf("panel %q: bad target %+v", p.Title, tg)
			}
			refs[tg.RefID] = true
			queries++
		}
	}
	for _, v := range d.Templating.List {
		if v.Datasource != want || v.Definition == "" {
			t.Errorf("variable %q: %+v", v.Name, v)
		}
	}
	if queries < 10 {
		t.Errorf("only %d queries", queries)
	}
	for _, m := range referencedMetrics(text) {
		if !slices.Contains(MetricNames(), m) {
			t.Errorf("the dashboard queries %s, which certkeeper does not export", m)
		}
	}
	for _, topic := range []string{"certkeeper_certificate_not_after_timestamp_seconds", "certkeeper_certificate_renewals_total",
		"certkeeper_vault_request_duration_seconds", "certkeeper_service_reloads_total"} {
		if !slices.Contains(referencedMetrics(text), topic) {
			t.Errorf("the dashboard does not show %s", topic)
		}
	}
}

func TestReadmeDocumentsEveryMetric(t *testing.T) {
	text := readFile(t, "../README.md")
	i := strings.Index(text, "## Metrics and health")
	if i < 0 {
		t.Fatal(`README.md has no "## Metrics and health" section`)
	}
	section := text[i:]
	if j := strings.Index(section[3:], "\n## "); j >= 0 {
		section = section[:j+3]
	}
	for _, name := range MetricNames() {
		if !strings.Contains(section, "`"+name) {
			t.Errorf("README's Metrics and health section does not document %s", name)
		}
	}
}
