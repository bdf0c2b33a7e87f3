package cktest

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Sample is one series of a scrape or a gather: its name, labels and
// value (a histogram's sample count).
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// ParseMetrics reads a /metrics body the way Prometheus' text parser does.
func ParseMetrics(t testing.TB, body string) []Sample {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	var out []Sample
	for _, mf := range mfs {
		out = append(out, samples(mf)...)
	}
	return out
}

// Gather reads every series of g.
func Gather(t testing.TB, g prometheus.Gatherer) []Sample {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var out []Sample
	for _, mf := range mfs {
		out = append(out, samples(mf)...)
	}
	return out
}

func samples(mf *dto.MetricFamily) []Sample {
	var out []Sample
	for _, m := range mf.Metric {
		s := Sample{Name: mf.GetName(), Labels: map[string]string{}}
		for _, l := range m.Label {
			s.Labels[l.GetName()] = l.GetValue()
		}
		switch mf.GetType() {
		case dto.MetricType_GAUGE:
			s.Value = m.Gauge.GetValue()
		case dto.MetricType_COUNTER:
			s.Value = m.Counter.GetValue()
		case dto.MetricType_HISTOGRAM:
			s.Value = float64(m.Histogram.GetSampleCount())
		case dto.MetricType_UNTYPED:
			s.Value = m.Untyped.GetValue()
		}
		out = append(out, s)
	}
	return out
}

// Find returns the value of the series with exactly these labels (name,
// value pairs).
func Find(ss []Sample, name string, labels ...string) (float64, bool) {
	for _, s := range ss {
		if s.Name != name || len(s.Labels) != len(labels)/2 {
			continue
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			if s.Labels[labels[i]] != labels[i+1] {
				ok = false
			}
		}
		if ok {
			return s.Value, true
		}
	}
	return 0, false
}

// MustFind is Find for a series that must be there.
func MustFind(t testing.TB, ss []Sample, name string, labels ...string) float64 {
	t.Helper()
	v, ok := Find(ss, name, labels...)
	if !ok {
		t.Fatalf("no series %s%v", name, labels)
	}
	return v
}

// ReadLeaf parses the first certificate of a PEM file.
func ReadLeaf(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s holds no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}
