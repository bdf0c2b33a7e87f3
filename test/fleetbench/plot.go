//go:build linux

package main

import (
	"image/color"
	"os"
	"sort"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// plot draws the run's timeline: requests per second at the doors (all,
// and successful issuances) with the phases marked, and below it the
// issue latency's median and 99th percentile per 5-second bin.
func (r *runResult) plot(path string) error {
	if len(r.records) == 0 {
		return nil
	}
	end := r.records[0].Start
	for _, rec := range r.records {
		if rec.Start.After(end) {
			end = rec.Start
		}
	}
	secs := int(end.Sub(r.t0).Seconds()) + 1
	all, issues := make([]float64, secs), make([]float64, secs)
	const latBin = 5
	lat := make([][]time.Duration, secs/latBin+1)
	for _, rec := range r.records {
		// Before t0 are the requests that measured the proxy itself.
		i := int(rec.Start.Sub(r.t0).Seconds())
		if rec.Start.Before(r.t0) || i >= secs {
			continue
		}
		all[i]++
		if rec.kind() == "issue" && rec.Status == 200 {
			issues[i]++
			lat[i/latBin] = append(lat[i/latBin], rec.Dur)
		}
	}

	top := plot.New()
	top.Title.Text = "Requests per second at the Vault nodes (1 s bins)"
	top.X.Label.Text = "seconds since the cold start"
	top.Y.Label.Text = "requests/s"
	top.Y.Min = 0
	ymax := 0.0
	for _, v := range all {
		ymax = max(ymax, v)
	}
	allLine, err := plotter.NewLine(series(all))
	if err != nil {
		return err
	}
	allLine.Color = color.RGBA{R: 120, G: 120, B: 120, A: 255}
	issueLine, err := plotter.NewLine(series(issues))
	if err != nil {
		return err
	}
	issueLine.Color = color.RGBA{R: 30, G: 90, B: 200, A: 255}
	top.Add(allLine, issueLine)
	top.Legend.Add("all requests", allLine)
	top.Legend.Add("certificates issued (200)", issueLine)
	// Below the phase labels, which run along the top.
	top.Legend.Top = true
	top.Legend.YOffs = -vg.Points(24)

	var labels plotter.XYLabels
	evenInLegend := false
	for _, ph := range r.phases {
		x := ph.start.Sub(r.t0).Seconds()
		if err := vline(top, x, ymax, color.RGBA{G: 140, A: 255}); err != nil {
			return err
		}
		labels.XYs = append(labels.XYs, plotter.XY{X: x, Y: ymax * 1.02})
		labels.Labels = append(labels.Labels, shortName(ph))
		if ph.spread > 0 {
			// The even rate the spread promises, over the spread.
			s := r.stats(ph)
			even, err := plotter.NewLine(plotter.XYs{{X: x, Y: s.even}, {X: x + ph.spread.Seconds(), Y: s.even}})
			if err != nil {
				return err
			}
			even.Color = color.RGBA{R: 220, G: 120, A: 255}
			even.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
			top.Add(even)
			if !evenInLegend {
				top.Legend.Add("even rate: certificates/spread", even)
				evenInLegend = true
			}
		}
		if !ph.killAt.IsZero() {
			if err := vline(top, ph.killAt.Sub(r.t0).Seconds(), ymax, color.RGBA{R: 200, A: 255}); err != nil {
				return err
			}
			labels.XYs = append(labels.XYs, plotter.XY{X: ph.killAt.Sub(r.t0).Seconds(), Y: ymax * 0.7})
			labels.Labels = append(labels.Labels, "leader killed")
		}
	}
	lbl, err := plotter.NewLabels(labels)
	if err != nil {
		return err
	}
	top.Add(lbl)
	top.Y.Max = ymax * 1.1

	bottom := plot.New()
	bottom.Title.Text = "Issue latency at the Vault nodes (5 s bins)"
	bottom.X.Label.Text = "seconds since the cold start"
	bottom.Y.Label.Text = "ms"
	bottom.Y.Scale = plot.LogScale{}
	bottom.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	var p50, p99 plotter.XYs
	for i, l := range lat {
		if len(l) == 0 {
			continue
		}
		sort.Slice(l, func(a, b int) bool { return l[a] < l[b] })
		x := float64(i*latBin) + latBin/2.0
		p50 = append(p50, plotter.XY{X: x, Y: max(0.1, msf(percentile(l, 0.5)))})
		p99 = append(p99, plotter.XY{X: x, Y: max(0.1, msf(percentile(l, 0.99)))})
	}
	if len(p50) > 0 {
		s50, err := plotter.NewScatter(p50)
		if err != nil {
			return err
		}
		s50.GlyphStyle.Color = color.RGBA{R: 30, G: 90, B: 200, A: 255}
		s50.GlyphStyle.Radius = vg.Points(1.5)
		s99, err := plotter.NewScatter(p99)
		if err != nil {
			return err
		}
		s99.GlyphStyle.Color = color.RGBA{R: 200, G: 40, B: 40, A: 255}
		s99.GlyphStyle.Radius = vg.Points(1.5)
		bottom.Add(s50, s99)
		bottom.Legend.Add("p50", s50)
		bottom.Legend.Add("p99", s99)
		bottom.Legend.Top = true
	}
	bottom.X.Min, bottom.X.Max = top.X.Min, top.X.Max

	const w, h = 30 * vg.Centimeter, 20 * vg.Centimeter
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4), PadX: vg.Points(4), PadY: vg.Points(12)}
	canvases := plot.Align([][]*plot.Plot{{top}, {bottom}}, tiles, dc)
	top.Draw(canvases[0][0])
	bottom.Draw(canvases[1][0])
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func series(v []float64) plotter.XYs {
	out := make(plotter.XYs, len(v))
	for i, y := range v {
		out[i] = plotter.XY{X: float64(i) + 0.5, Y: y}
	}
	return out
}

func vline(p *plot.Plot, x, ymax float64, c color.Color) error {
	l, err := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: ymax}})
	if err != nil {
		return err
	}
	l.Color = c
	l.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
	p.Add(l)
	return nil
}

func shortName(ph *phase) string {
	switch {
	case ph.spread == 0:
		return "cold start"
	case !ph.killAt.IsZero():
		return "rotate " + ph.spread.String() + " + kill"
	}
	return "rotate " + ph.spread.String()
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
