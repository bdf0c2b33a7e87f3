package telemetry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"

	"github.com/certkeeper/certkeeper/agent"
)

// StatusURL is where an agent listening on listen answers /v1/status. An
// agent listening on every address (0.0.0.0, ::, or no host) is reached on
// loopback.
func StatusURL(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("telemetry listen address %q: %w", listen, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/v1/status", nil
}

// FetchStatus asks the running agent at url for its status. It fails when
// nothing answers, or when the agent that answers runs another config than
// configPath (two agents, or a port reused by something else).
func FetchStatus(ctx context.Context, url, configPath string) ([]agent.Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", url, resp.Status)
	}
	if got, want := resp.Header.Get(ConfigHeader), canonical(configPath); canonical(got) != want {
		return nil, &OtherAgentError{URL: url, Config: got, Want: want}
	}
	var out []agent.Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("reading status from %s: %w", url, err)
	}
	return out, nil
}

// OtherAgentError is an agent answering for another config file.
type OtherAgentError struct {
	URL, Config, Want string
}

func (e *OtherAgentError) Error() string {
	return fmt.Sprintf("the agent at %s runs %s, not %s", e.URL, e.Config, e.Want)
}

// canonical makes two spellings of one config path compare equal.
func canonical(p string) string {
	if p == "" {
		return ""
	}
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	if real, err := filepath.EvalSymlinks(p); err == nil {
		p = real
	}
	return p
}
