package telemetry

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/certkeeper/certkeeper/agent"
)

// /v1/status has no authentication and listens wherever telemetry does,
// so what one request costs is bounded whatever the number of
// certificates: a bare GET answers a summary (counts by state, the
// earliest expiry, and at most attentionMax certificates that need
// attention), and the full list is read a page at a time. With 10,000
// certificates the whole list was 1.7 MB and about 58 ms per request
// (BenchmarkStatusEndpoint has the numbers now).

// Paging limits for /v1/status?offset=&limit=.
const (
	defaultPage = 100
	maxPage     = 1000
	// attentionMax bounds the certificates the summary names.
	attentionMax = 20
)

// StatusSummary is what a bare GET of /v1/status answers.
type StatusSummary struct {
	Config       string         `json:"config"`
	Certificates int            `json:"certificates"`
	States       map[string]int `json:"states"`
	// EarliestExpiry is the certificate on disk that expires first.
	EarliestExpiry *agent.Status `json:"earliest_expiry,omitempty"`
	// Attention lists, in name order, up to attentionMax certificates
	// that are not valid (failing, due, missing, expired); AttentionTotal
	// counts them all.
	Attention      []agent.Status `json:"attention"`
	AttentionTotal int            `json:"attention_total"`
	// List is where the full list starts.
	List string `json:"list"`
}

// StatusPage is one page of the full list, in name order.
type StatusPage struct {
	Config       string         `json:"config"`
	Total        int            `json:"total"`
	Offset       int            `json:"offset"`
	Limit        int            `json:"limit"`
	Certificates []agent.Status `json:"certificates"`
	// Next is the following page; empty on the last one.
	Next string `json:"next,omitempty"`
}

func serveStatus(o HandlerOptions, w http.ResponseWriter, r *http.Request) {
	w.Header().Set(ConfigHeader, o.ConfigPath)
	q := r.URL.Query()
	var body any
	if !q.Has("offset") && !q.Has("limit") {
		body = summarize(o.ConfigPath, o.Status.Statuses())
	} else {
		offset, limit, err := pageParams(q.Get("offset"), q.Get("limit"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = page(o.ConfigPath, o.Status.Statuses(), offset, limit)
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(body); err != nil {
		o.Log.Debug("writing status response", "error", err)
	}
}

func summarize(config string, sts []agent.Status) StatusSummary {
	s := StatusSummary{Config: config, Certificates: len(sts), States: map[string]int{}, Attention: []agent.Status{},
		List: fmt.Sprintf("/v1/status?offset=0&limit=%d", defaultPage)}
	for i, st := range sts {
		s.States[st.State]++
		if !st.NotAfter.IsZero() && (s.EarliestExpiry == nil || st.NotAfter.Before(s.EarliestExpiry.NotAfter)) {
			s.EarliestExpiry = &sts[i]
		}
		if st.State != agent.StateValid {
			s.AttentionTotal++
			if len(s.Attention) < attentionMax {
				s.Attention = append(s.Attention, st)
			}
		}
	}
	return s
}

func pageParams(offsetParam, limitParam string) (offset, limit int, err error) {
	limit = defaultPage
	if offsetParam != "" {
		if offset, err = strconv.Atoi(offsetParam); err != nil || offset < 0 {
			return 0, 0, fmt.Errorf("offset %q: want a whole number, 0 or more", offsetParam)
		}
	}
	if limitParam != "" {
		if limit, err = strconv.Atoi(limitParam); err != nil || limit < 1 {
			return 0, 0, fmt.Errorf("limit %q: want a whole number from 1 to %d", limitParam, maxPage)
		}
	}
	return offset, min(limit, maxPage), nil
}

func page(config string, sts []agent.Status, offset, limit int) StatusPage {
	p := StatusPage{Config: config, Total: len(sts), Offset: offset, Limit: limit}
	from, to := min(offset, len(sts)), min(offset+limit, len(sts))
	p.Certificates = sts[from:to]
	if to < len(sts) {
		p.Next = fmt.Sprintf("/v1/status?offset=%d&limit=%d", to, limit)
	}
	return p
}
