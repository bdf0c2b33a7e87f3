package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// manPage renders the usage text as a certkeeper(1) man page. The usage is
// kept verbatim (in a no-fill block) so the page says exactly what -h says.
func manPage(usage, version string) string {
	var b strings.Builder
	fmt.Fprintf(&b, ".TH CERTKEEPER 1 %q %q \"certkeeper manual\"\n", buildDate(), "certkeeper "+version)
	b.WriteString(".SH NAME\ncertkeeper \\- keep mutual-TLS certificates from HashiCorp Vault fresh on disk\n")
	b.WriteString(".SH SYNOPSIS\n.B certkeeper\n.I command\n[\\fIflags\\fR]\n")
	b.WriteString(".SH DESCRIPTION\n")
	b.WriteString("certkeeper logs in to Vault, gets certificates from its PKI secrets engine (by default from a key made on this host and signed through a CSR), renews them well before they expire, and writes them atomically where nginx, Apache and other servers read them.\n")
	b.WriteString(".SH USAGE\n.nf\n")
	for _, line := range strings.Split(strings.TrimRight(usage, "\n"), "\n") {
		b.WriteString(roffEscape(line) + "\n")
	}
	b.WriteString(".fi\n")
	b.WriteString(".SH FILES\n.TP\n.I /etc/certkeeper/certkeeper.hcl\nthe configuration file\n.TP\n.I /var/lib/certkeeper\nstate and crash journals (state_dir)\n")
	b.WriteString(".SH EXIT STATUS\n0 on success; 1 when a command failed (for once: when any certificate is not in place); 2 for usage errors.\n")
	b.WriteString(".SH SEE ALSO\n.BR nginx (8),\n.BR apache2 (8),\n.BR vault (1)\n")
	return b.String()
}

// roffEscape keeps backslashes and leading dots or quotes from being read
// as roff requests.
func roffEscape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// buildDate honours SOURCE_DATE_EPOCH so packages build reproducibly.
func buildDate() string {
	t := time.Now()
	if s, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil {
		t = time.Unix(s, 0)
	}
	return t.UTC().Format("2006-01-02")
}
