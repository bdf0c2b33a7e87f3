package daemon

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func TestLoopbackOnly(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:6060": true,
		"[::1]:6060":     true,
		"localhost:6060": true,
		"0.0.0.0:6060":   false,
		":6060":          false,
		"10.1.2.3:6060":  false,
		"example.com:80": false,
		"127.0.0.1":      false, // no port
	} {
		if err := loopbackOnly(addr); (err == nil) != ok {
			t.Errorf("loopbackOnly(%q) = %v, want ok=%v", addr, err, ok)
		}
	}
}

func TestPprofServesProfilesOnLoopback(t *testing.T) {
	var logs bytes.Buffer
	stop, err := startPprof("127.0.0.1:0", slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	// The log line is how an operator who asked for port 0 finds the port.
	_, url, ok := strings.Cut(logs.String(), "address=")
	if !ok {
		t.Fatalf("no address logged: %s", logs.String())
	}
	url = strings.Fields(url)[0]
	resp, err := http.Get(url + "goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("goroutine profile")) {
		t.Fatalf("GET %sgoroutine: %s\n%s", url, resp.Status, body)
	}
	stop()
	if _, err := http.Get(url); err == nil {
		t.Fatal("pprof still answers after stop")
	}
}
