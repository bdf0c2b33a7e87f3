//go:build integration

package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// freeAddr returns a loopback address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// writeConfigWith writes the env's config (see writeConfig) followed by
// extra top-level blocks, such as telemetry and watch.
func (e *env) writeConfigWith(extra string, certs ...string) string {
	e.t.Helper()
	return e.writeConfig(append(certs, extra)...)
}

func telemetryBlock(addr string) string {
	return fmt.Sprintf("telemetry {\n  listen = %q\n}\n", addr)
}

// httpGet returns the status code and body, failing the test when nothing
// answers.
func httpGet(t *testing.T, url string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// series is one sample of a scrape.
type series struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape reads /metrics the way Prometheus' text parser does.
func scrape(t *testing.T, addr string) []series {
	t.Helper()
	code, body := httpGet(t, "http://"+addr+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics answered %d: %s", code, body)
	}
	return parseScrape(t, body)
}

func parseScrape(t *testing.T, body string) []series {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	var out []series
	for name, mf := range mfs {
		for _, m := range mf.Metric {
			s := series{name: name, labels: map[string]string{}}
			for _, l := range m.Label {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch mf.GetType() {
			case dto.MetricType_GAUGE:
				s.value = m.Gauge.GetValue()
			case dto.MetricType_COUNTER:
				s.value = m.Counter.GetValue()
			case dto.MetricType_HISTOGRAM:
				s.value = float64(m.Histogram.GetSampleCount())
			case dto.MetricType_UNTYPED:
				s.value = m.Untyped.GetValue()
			}
			out = append(out, s)
		}
	}
	return out
}

// value finds the series with exactly these labels.
func value(ss []series, name string, labels ...string) (float64, bool) {
	for _, s := range ss {
		if s.name != name || len(s.labels) != len(labels)/2 {
			continue
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			if s.labels[labels[i]] != labels[i+1] {
				ok = false
			}
		}
		if ok {
			return s.value, true
		}
	}
	return 0, false
}

func mustValue(t *testing.T, ss []series, name string, labels ...string) float64 {
	t.Helper()
	v, ok := value(ss, name, labels...)
	if !ok {
		t.Fatalf("no series %s%v in the scrape", name, labels)
	}
	return v
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	cktest.WaitFor(t, what, timeout, cond)
}

// readCerts parses every certificate of a PEM file.
func readCerts(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []*x509.Certificate
	for _, block := range pemBlocks(data) {
		c, err := x509.ParseCertificate(block)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, c)
	}
	return out
}

// serialOf formats a serial the way certkeeper and Vault print it.
func serialOf(c *x509.Certificate) string {
	hex := fmt.Sprintf("%x", c.SerialNumber)
	if len(hex)%2 == 1 {
		hex = "0" + hex
	}
	var parts []string
	for i := 0; i < len(hex); i += 2 {
		parts = append(parts, hex[i:i+2])
	}
	return strings.Join(parts, ":")
}

// replaceFile writes data beside path and renames it over path.
func unix(t time.Time) float64 { return float64(t.Unix()) }

func pemBlocks(data []byte) [][]byte {
	var out [][]byte
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out
		}
		if block.Type == "CERTIFICATE" {
			out = append(out, block.Bytes)
		}
	}
}

// selfSigned makes a certificate for a watched file, one certkeeper does
// not manage.
func selfSigned(t *testing.T, cn string, notAfter time.Time) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

var httpClient = &http.Client{Timeout: 5 * time.Second}
