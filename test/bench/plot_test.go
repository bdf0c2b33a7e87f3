//go:build linux

package main

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sum is a job's medians as summarize makes them: one successful run.
func sum(tool string, n int, key string, elapsed time.Duration, peakMB float64) summary {
	return summary{Job: job{tool, n, key}, Runs: 1, Elapsed: elapsed, PeakRSS: int64(peakMB * (1 << 20))}
}

// benchSums are the EC medians of results/2026-11-27-68d1e3a.md, with the
// jobs the plot must leave out mixed in and the counts out of order.
func benchSums() []summary {
	ms := time.Millisecond
	return []summary{
		sum(toolCertkeeper, 1000, "ec", 4620*ms, 41.5),
		sum(toolAgent, 1000, "ec", 3250*ms, 229.2),
		sum(toolFloor, 1000, "ec", 1110*ms, 15.6),
		sum(toolCertkeeper, 100, "ec", 350*ms, 25.7),
		sum(toolAgent, 100, "ec", 310*ms, 179.0),
		sum(toolFloor, 100, "ec", 150*ms, 14.2),
		sum(toolCertkeeperIssue, 100, "ec", 340*ms, 25.7),
		sum(toolCertkeeper, 100, "rsa", 3620*ms, 26.5),
		sum(toolAgent, 100, "rsa", 4260*ms, 181.4),
		sum(toolFloor, 100, "rsa", 3210*ms, 15.0),
		sum(toolCertkeeper, 10000, "ec", 34780*ms, 184.2),
		// Every run at this count failed: the table says so, the plot
		// draws nothing for it.
		{Job: job{toolAgent, 10000, "ec"}, Runs: 1, Failed: 1},
	}
}

func TestPlotSeriesArePerToolECMediansByCount(t *testing.T) {
	got := plotSeries(benchSums())
	want := []series{
		{Label: "certkeeper", N: []int{100, 1000, 10000}, Time: []float64{0.35, 4.62, 34.78}, PeakMB: []float64{25.7, 41.5, 184.2}},
		{Label: "Vault Agent", N: []int{100, 1000}, Time: []float64{0.31, 3.25}, PeakMB: []float64{179.0, 229.2}},
		{Label: "floor (vault/api, writes nothing)", N: []int{100, 1000}, Time: []float64{0.15, 1.11}, PeakMB: []float64{14.2, 15.6}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d series %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Label != w.Label || !reflect.DeepEqual(g.N, w.N) || !near(g.Time, w.Time) || !near(g.PeakMB, w.PeakMB) {
			t.Errorf("series %d:\n got  %+v\n want %+v", i, g, w)
		}
	}
}

func near(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if d := a[i] - b[i]; d > 1e-6 || d < -1e-6 {
			return false
		}
	}
	return true
}

// TestWritePlotDrawsEveryToolInBothPanels reads the SVG back as XML: it
// must be a well-formed <svg> document that names each tool once (the
// legend above the panels) and draws each tool's line, through as many
// points as it has counts, in both panels (time on the left, memory on
// the right).
func TestWritePlotDrawsEveryToolInBothPanels(t *testing.T) {
	path := filepath.Join(t.TempDir(), "2026-11-27-68d1e3a.svg")
	wrote, err := writePlot(path, benchSums())
	if err != nil || !wrote {
		t.Fatalf("writePlot = %v, %v; want true, nil", wrote, err)
	}
	doc := readSVG(t, path)
	if doc.root.Space != "http://www.w3.org/2000/svg" || doc.root.Local != "svg" {
		t.Fatalf("root element is %v, want svg in the SVG namespace", doc.root)
	}
	count := map[string]int{}
	for _, s := range doc.texts {
		count[s]++
	}
	for _, text := range []string{
		"certkeeper", "Vault Agent", "floor (vault/api, writes nothing)",
		"Time to disk (EC P-256, medians)", "Peak RSS (EC P-256, medians)",
	} {
		if count[text] != 1 {
			t.Errorf("%q appears %d times as text, want once; texts: %q", text, count[text], doc.texts)
		}
	}
	// The x ticks are the counts measured ("100" may also be a y label).
	for _, n := range []string{"100", "1000", "10000"} {
		if count[n] < 2 {
			t.Errorf("x tick %q appears %d times, want at least 2", n, count[n])
		}
	}

	// The first thing drawn is an opaque page: on a dark page a
	// transparent legend strip would be black on black.
	page := fmt.Sprintf("M0,0L%[1]g,0L%[1]g,%[2]gL0,%[2]gZ", float64(figureWidth), float64(figureHeight))
	if len(doc.paths) == 0 {
		t.Fatal("no paths drawn")
	}
	if first := doc.paths[0]; first.d != page || first.style != "fill:#FFFFFF" {
		t.Errorf("first path is %+v, want the whole page filled white (%s)", first, page)
	}

	// Each y axis spans its own data, ending on labelled values: 0.1 to
	// 50 s (0.15 to 34.78), 10 to 500 MB (14.2 to 229.2).
	for _, v := range []string{"0.1", "0.5", "500"} {
		if count[v] != 1 {
			t.Errorf("y tick %q appears %d times, want once", v, count[v])
		}
	}

	// Below the legend strip, split at the middle: a tool's line is a
	// path in its colour with one vertex per count.
	panelTop, mid := float64(figureHeight-legendHeight), float64(figureWidth)/2
	for i, want := range []struct {
		label string
		n     int
	}{{"certkeeper", 3}, {"Vault Agent", 2}, {"floor (vault/api, writes nothing)", 2}} {
		r, g, b, _ := lineStyle(i).Color.RGBA()
		stroke := fmt.Sprintf("stroke:#%02X%02X%02X;stroke-width:1.5", r>>8, g>>8, b>>8)
		var left, right int
		for _, p := range doc.paths {
			if !strings.Contains(p.style, stroke) || len(p.points) != want.n || p.points[0][1] >= panelTop {
				continue
			}
			if p.points[0][0] < mid {
				left++
			} else {
				right++
			}
		}
		if left != 1 || right != 1 {
			t.Errorf("%s: %d lines of %d points in the time panel and %d in the memory panel, want 1 and 1", want.label, left, want.n, right)
		}
	}
}

type svgDoc struct {
	root  xml.Name
	texts []string
	paths []svgPath
}

// svgPath is a path element's outline and style and, for paths made only
// of moves and lines, its vertices in the plot's coordinates (origin bottom left).
type svgPath struct {
	d, style string
	points   [][2]float64
}

// readSVG decodes the whole file, so a truncated or malformed document
// fails.
func readSVG(t *testing.T, path string) svgDoc {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := xml.NewDecoder(f)
	var doc svgDoc
	var inText bool
	var cur strings.Builder
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", path, err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if doc.root.Local == "" {
				doc.root = el.Name
			}
			switch el.Name.Local {
			case "text":
				inText = true
				cur.Reset()
			case "path":
				var p svgPath
				for _, a := range el.Attr {
					switch a.Name.Local {
					case "style":
						p.style = a.Value
					case "d":
						p.d, p.points = a.Value, polyline(a.Value)
					}
				}
				doc.paths = append(doc.paths, p)
			}
		case xml.CharData:
			if inText {
				cur.Write(el)
			}
		case xml.EndElement:
			if el.Name.Local == "text" {
				inText = false
				doc.texts = append(doc.texts, strings.TrimSpace(cur.String()))
			}
		}
	}
	if doc.root.Local == "" {
		t.Fatalf("%s has no root element", path)
	}
	return doc
}

// polyline reads "M x,y L x,y ..." and returns nil for any other path
// (markers are arcs or closed shapes).
func polyline(d string) [][2]float64 {
	if !strings.HasPrefix(d, "M") || strings.ContainsAny(d, "AZz") {
		return nil
	}
	var pts [][2]float64
	for _, seg := range strings.FieldsFunc(d, func(r rune) bool { return r == 'M' || r == 'L' }) {
		x, y, ok := strings.Cut(seg, ",")
		fx, err1 := strconv.ParseFloat(strings.TrimSpace(x), 64)
		fy, err2 := strconv.ParseFloat(strings.TrimSpace(y), 64)
		if !ok || err1 != nil || err2 != nil {
			return nil
		}
		pts = append(pts, [2]float64{fx, fy})
	}
	return pts
}

func TestWritePlotEdgeCases(t *testing.T) {
	dir := t.TempDir()

	// One count only (make bench BENCH_FLAGS='-n 100 -big 0 -extra-n ""'):
	// a log axis around a single value must still be drawn.
	one := filepath.Join(dir, "one.svg")
	ms := time.Millisecond
	wrote, err := writePlot(one, []summary{sum(toolCertkeeper, 100, "ec", 350*ms, 25.7), sum(toolFloor, 100, "ec", 350*ms, 25.7)})
	if err != nil || !wrote {
		t.Fatalf("one count: writePlot = %v, %v; want true, nil", wrote, err)
	}
	if doc := readSVG(t, one); !slices.Contains(doc.texts, "certkeeper") {
		t.Errorf("one count: no certkeeper in %q", doc.texts)
	}

	// Nothing to draw: no file, and no error to stop the bench, whose
	// table is already written.
	none := filepath.Join(dir, "none.svg")
	wrote, err = writePlot(none, []summary{sum(toolCertkeeper, 100, "rsa", 350*ms, 25.7), {Job: job{toolFloor, 100, "ec"}, Runs: 2, Failed: 2}})
	if err != nil || wrote {
		t.Fatalf("nothing to plot: writePlot = %v, %v; want false, nil", wrote, err)
	}
	if _, err := os.Stat(none); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("nothing to plot, but %s exists (stat: %v)", none, err)
	}
}

func TestLogAxisEndsOnLabelledValues(t *testing.T) {
	for _, c := range []struct{ v, floor, ceil float64 }{
		{0.15, 0.1, 0.2},
		{0.31, 0.2, 0.5},
		{34.78, 20, 50},
		{229.2, 200, 500},
		{14.2, 10, 20},
		{5, 5, 5},
		{1000, 1000, 1000},
		{6, 5, 10},
	} {
		if got := floor125(c.v); !near([]float64{got}, []float64{c.floor}) {
			t.Errorf("floor125(%v) = %v, want %v", c.v, got, c.floor)
		}
		if got := ceil125(c.v); !near([]float64{got}, []float64{c.ceil}) {
			t.Errorf("ceil125(%v) = %v, want %v", c.v, got, c.ceil)
		}
	}
	var labels []string
	for _, tk := range logTicks125(0.1, 50) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if want := []string{"0.1", "0.2", "0.5", "1", "2", "5", "10", "20", "50"}; !reflect.DeepEqual(labels, want) {
		t.Errorf("labels from 0.1 to 50: %q, want %q", labels, want)
	}
}
