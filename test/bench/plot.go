//go:build linux

package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// plotted are the tools drawn, in legend order, with the names a reader of
// the README knows them by. RSA and issue mode stay in the table only: the
// plot answers one question, how time and memory grow with the number of
// EC certificates, side by side.
var plotted = []struct{ tool, label string }{
	{toolCertkeeper, "certkeeper"},
	{toolAgent, "Vault Agent"},
	{toolFloor, "floor (vault/api, writes nothing)"},
}

// series is one tool's medians by certificate count, ascending.
type series struct {
	Label  string
	N      []int
	Time   []float64 // seconds to disk
	PeakMB []float64 // peak RSS, MB (MiB, as in the table)
}

// plotSeries picks from the table's medians the points the plot draws:
// EC P-256 jobs that succeeded at least once, one series per plotted tool
// that has any. The -big run is a certkeeper job like the others, so it
// extends certkeeper's line.
func plotSeries(sums []summary) []series {
	var out []series
	for _, t := range plotted {
		var pts []summary
		for _, s := range sums {
			if s.Job.Tool == t.tool && s.Job.Key == "ec" && s.Runs > s.Failed {
				pts = append(pts, s)
			}
		}
		if len(pts) == 0 {
			continue
		}
		slices.SortFunc(pts, func(a, b summary) int { return a.Job.N - b.Job.N })
		sr := series{Label: t.label}
		for _, p := range pts {
			sr.N = append(sr.N, p.Job.N)
			sr.Time = append(sr.Time, p.Elapsed.Seconds())
			sr.PeakMB = append(sr.PeakMB, mb(p.PeakRSS))
		}
		out = append(out, sr)
	}
	return out
}

// writePlot writes an SVG of two panels, time to disk and peak RSS against
// the number of certificates, both axes logarithmic: the counts go up by
// tens and the values span two decades, and on log axes a ratio between
// two tools is a constant gap, which is what the targets are stated in.
// SVG because it is text (it diffs and stays small in git) and renders in
// the README. A run with nothing to draw (every run failed, or -tools left
// out all three) writes no file and reports false.
func writePlot(path string, sums []summary) (bool, error) {
	ss := plotSeries(sums)
	if len(ss) == 0 {
		return false, nil
	}
	c := vgsvg.New(figureWidth, figureHeight)
	if err := drawFigure(draw.New(c), ss); err != nil {
		return false, err
	}
	f, err := os.Create(path)
	if err != nil {
		return false, fmt.Errorf("writing plot: %w", err)
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return false, fmt.Errorf("writing plot %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("writing plot %s: %w", path, err)
	}
	return true, nil
}

const (
	figureWidth, figureHeight = 11 * vg.Inch, 4.75 * vg.Inch
	// legendHeight is the strip above both panels that names the tools
	// once: a legend inside a panel covers data wherever it is put.
	legendHeight = vg.Inch / 3
)

func drawFigure(dc draw.Canvas, ss []series) error {
	timeP, err := panel(ss, "Time to disk (EC P-256, medians)", "seconds (log scale)", func(s series) []float64 { return s.Time })
	if err != nil {
		return err
	}
	rssP, err := panel(ss, "Peak RSS (EC P-256, medians)", "MB (log scale)", func(s series) []float64 { return s.PeakMB })
	if err != nil {
		return err
	}
	// Opaque, so the legend strip and the gaps stay readable where the
	// page behind the image is dark (GitHub's dark theme).
	dc.FillPolygon(color.White, []vg.Point{dc.Min, {X: dc.Max.X, Y: dc.Min.Y}, dc.Max, {X: dc.Min.X, Y: dc.Max.Y}})
	h := dc.Max.Y - dc.Min.Y
	strip := draw.Crop(dc, 0, 0, h-legendHeight, 0)
	body := draw.Crop(dc, 0, 0, 0, -legendHeight)

	// One single-entry legend per tool, side by side and centred as a
	// group, reads as one row.
	const gap = vg.Inch / 3
	legends := make([]plot.Legend, len(ss))
	widths := make([]vg.Length, len(ss))
	total := gap * vg.Length(len(ss)-1)
	for i, s := range ss {
		legends[i] = plot.NewLegend()
		legends[i].Left, legends[i].Top = true, true
		legends[i].Add(s.Label, &plotter.Line{LineStyle: lineStyle(i)}, &plotter.Scatter{GlyphStyle: glyphStyle(i)})
		widths[i] = legends[i].ThumbnailWidth + legends[i].TextStyle.Rectangle(" "+s.Label).Max.X
		total += widths[i]
	}
	x := (strip.Max.X - strip.Min.X - total) / 2
	for i := range legends {
		legends[i].XOffs, legends[i].YOffs = x, -vg.Inch/10
		legends[i].Draw(strip)
		x += widths[i] + gap
	}

	// Side by side without plot.Align: it lines up the data areas but
	// lets the titles drift apart, and both panels have the same x axis.
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Inch / 4, PadTop: vg.Inch / 16, PadBottom: vg.Inch / 8, PadLeft: vg.Inch / 8, PadRight: vg.Inch / 8}
	timeP.Draw(tiles.At(body, 0, 0))
	rssP.Draw(tiles.At(body, 1, 0))
	return nil
}

// Each tool keeps its colour and marker in both panels and the legend.
func lineStyle(i int) draw.LineStyle {
	return draw.LineStyle{Color: plotutil.Color(i), Width: vg.Points(1.5)}
}

func glyphStyle(i int) draw.GlyphStyle {
	return draw.GlyphStyle{Color: plotutil.Color(i), Radius: vg.Points(3), Shape: plotutil.Shape(i)}
}

func panel(ss []series, title, ylabel string, y func(series) []float64) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "certificates (log scale)"
	p.Y.Label.Text = ylabel
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.Add(plotter.NewGrid())

	var ns []int
	var ys []float64
	for i, s := range ss {
		vals := y(s)
		xys := make(plotter.XYs, 0, len(s.N))
		for k, n := range s.N {
			// A log axis cannot place zero; a tool that reported no
			// memory for a run is better missing than a panic.
			if vals[k] <= 0 {
				continue
			}
			xys = append(xys, plotter.XY{X: float64(n), Y: vals[k]})
			ns = append(ns, n)
			ys = append(ys, vals[k])
		}
		if len(xys) == 0 {
			continue
		}
		l, pts, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, fmt.Errorf("plotting %s: %w", s.Label, err)
		}
		l.LineStyle, pts.GlyphStyle = lineStyle(i), glyphStyle(i)
		p.Add(l, pts)
	}
	if len(ns) == 0 {
		return nil, fmt.Errorf("plotting %q: no positive values", title)
	}

	// The counts measured are the x ticks: they are what the table lists.
	slices.Sort(ns)
	ns = slices.Compact(ns)
	var xt plot.ConstantTicks
	for _, n := range ns {
		xt = append(xt, plot.Tick{Value: float64(n), Label: strconv.Itoa(n)})
	}
	p.X.Tick.Marker = xt
	p.X.Min, p.X.Max = widen(float64(ns[0]), float64(ns[len(ns)-1]))

	// The y axis ends on a labelled 1-2-5 value below and above the data.
	p.Y.Min, p.Y.Max = widen(floor125(slices.Min(ys)), ceil125(slices.Max(ys)))
	p.Y.Tick.Marker = plot.TickerFunc(logTicks125)
	return p, nil
}

// widen gives a log axis room around a single value (one count measured,
// or every tool equally fast): plot would otherwise pad by ±1, which can
// reach zero.
func widen(lo, hi float64) (float64, float64) {
	if lo == hi {
		return lo / 2, hi * 2
	}
	return lo, hi
}

// floor125 and ceil125 round v down or up to 1, 2 or 5 times a power of
// ten, the values logTicks125 labels.
func floor125(v float64) float64 {
	dec := math.Pow10(int(math.Floor(math.Log10(v))))
	for _, m := range []float64{5, 2, 1} {
		if m*dec <= v*(1+1e-9) {
			return m * dec
		}
	}
	return dec
}

func ceil125(v float64) float64 {
	dec := math.Pow10(int(math.Floor(math.Log10(v))))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*dec >= v*(1-1e-9) {
			return m * dec
		}
	}
	return 10 * dec
}

// logTicks125 labels 1, 2 and 5 times each power of ten in range, or
// only the powers when the range spans more than about three decades, so
// labels never crowd; the other integer multiples are unlabelled minor
// ticks.
func logTicks125(min, max float64) []plot.Tick {
	labelled := map[int]bool{1: true, 2: true, 5: true}
	if math.Log10(max/min) > 3 {
		labelled = map[int]bool{1: true}
	}
	var ticks []plot.Tick
	for k := int(math.Floor(math.Log10(min))); math.Pow10(k) <= max; k++ {
		dec := math.Pow10(k)
		for i := 1; i < 10; i++ {
			v := float64(i) * dec
			if v < min*(1-1e-9) || v > max*(1+1e-9) {
				continue
			}
			t := plot.Tick{Value: v}
			if labelled[i] {
				t.Label = strconv.FormatFloat(v, 'g', -1, 64)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}
