package services

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/internal/notice"
)

// What a check or reload command is told about the changes it loads, in
// its environment (beside the harmless variables childEnv lets through):
//
//	CERTKEEPER_SERVICE        the service's name
//	CERTKEEPER_CHANGES        a JSON file (notice.Document): every change of the batch
//	CERTKEEPER_REASONS        the reasons, space-separated, each once (renewal rotation ...)
//	CERTKEEPER_URGENT         1 when a change in the batch is urgent, else 0
//	CERTKEEPER_CERTIFICATES   the certificates changed, space-separated
//	CERTKEEPER_TRUST_BUNDLES  the trust bundles changed, space-separated
//	RENEWED_DOMAINS           the names of every certificate changed, space-separated (as certbot)
//	RENEWED_LINEAGE           with exactly one certificate changed: the directory of its cert_file
//
// Names are stable: hooks rely on them. A retried reload gets the
// changes it loads again. A reload that follows no change (a server found
// serving stale files at start) gets CERTKEEPER_SERVICE and an empty
// document. Nothing secret is ever in either: names, serials, dates, paths.

// Environment variable names.
const (
	EnvService      = "CERTKEEPER_SERVICE"
	EnvChanges      = "CERTKEEPER_CHANGES"
	EnvReasons      = "CERTKEEPER_REASONS"
	EnvUrgent       = "CERTKEEPER_URGENT"
	EnvCertificates = "CERTKEEPER_CERTIFICATES"
	EnvBundles      = "CERTKEEPER_TRUST_BUNDLES"
	EnvDomains      = "RENEWED_DOMAINS"
	EnvLineage      = "RENEWED_LINEAGE"
)

// hook is what one command is told.
type hook struct {
	service string
	changes []notice.Notice
}

// prepare writes the batch's document to a file of its own (0600, in
// TMPDIR, which the packaged unit makes private) and returns the
// variables that describe the batch, and a function that removes the
// file once the command is done.
func (h hook) prepare() (env []string, done func(), err error) {
	doc := notice.Document{Version: notice.DocumentVersion, Service: h.service, Changes: h.changes}
	if doc.Changes == nil {
		doc.Changes = []notice.Notice{}
	}
	var reasons, certs, bundles, domains []string
	var lineage []string
	addUnique := func(list *[]string, s string) {
		if s != "" && !slices.Contains(*list, s) {
			*list = append(*list, s)
		}
	}
	for _, n := range h.changes {
		doc.Urgent = doc.Urgent || n.Urgent
		addUnique(&reasons, string(n.Reason))
		switch n.Kind {
		case notice.Certificate:
			addUnique(&certs, n.Name)
			for _, d := range n.Names {
				addUnique(&domains, d)
			}
			if f := n.Outputs["cert_file"]; f != "" {
				addUnique(&lineage, filepath.Dir(f))
			}
		case notice.TrustBundle:
			addUnique(&bundles, n.Name)
		}
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, nil, fmt.Errorf("encoding the changes for the command: %w", err)
	}
	f, err := os.CreateTemp("", "certkeeper-changes-*.json")
	if err != nil {
		return nil, nil, fmt.Errorf("writing the changes for the command: %w", err)
	}
	done = func() { os.Remove(f.Name()) }
	_, err = f.Write(append(data, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		done()
		return nil, nil, fmt.Errorf("writing the changes for the command: %w", err)
	}
	urgent := "0"
	if doc.Urgent {
		urgent = "1"
	}
	env = []string{
		EnvService + "=" + h.service,
		EnvChanges + "=" + f.Name(),
		EnvReasons + "=" + strings.Join(reasons, " "),
		EnvUrgent + "=" + urgent,
		EnvCertificates + "=" + strings.Join(certs, " "),
		EnvBundles + "=" + strings.Join(bundles, " "),
	}
	if len(certs) > 0 {
		env = append(env, EnvDomains+"="+strings.Join(domains, " "))
	}
	// certbot runs its deploy hook once per lineage; a batch of several
	// certificates has no one lineage, and the document lists them all.
	if len(certs) == 1 && len(lineage) == 1 {
		env = append(env, EnvLineage+"="+lineage[0])
	}
	return env, done, nil
}

// runHook runs argv (a check or reload command of the service) with what
// h says in its environment.
func runHook(ctx context.Context, argv []string, timeout time.Duration, h hook) error {
	env, done, err := h.prepare()
	if err != nil {
		return err
	}
	defer done()
	return runCommand(ctx, argv, timeout, env...)
}
