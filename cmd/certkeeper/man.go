package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/config"
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
	b.WriteString(".SH WHO RUNS WHAT\n")
	b.WriteString("The owner of state_dir (the system user certkeeper, in the package) writes everything certkeeper writes. run, once, rotate and status started as root switch to that user right after reading the config, keeping only CAP_KILL (to signal a root-owned server for a reload); started by any other user they refuse and name the user to run as. validate and policy only read the config: anyone may run them.\n")
	b.WriteString(".PP\nThe packaged unit runs the daemon as certkeeper with CAP_KILL. Server checks that need root on Debian go through sudo \\-n, which /etc/sudoers.d/certkeeper allows for exactly \\fB/usr/sbin/nginx \\-t \\-q\\fR and \\fB/usr/sbin/apache2ctl \\-t\\fR.\n")
	writeReference(&b, config.LoadReference())
	b.WriteString(".SH FILES\n.TP\n.I /etc/certkeeper/certkeeper.hcl\nthe configuration file\n.TP\n.I /var/lib/certkeeper\nstate and crash journals (state_dir), 0700 certkeeper\n.TP\n.I /etc/ssl/certkeeper\nwhere the shipped config writes certificates, keys, CA files and CRLs\n.TP\n.I /etc/sudoers.d/certkeeper\nthe server checks the certkeeper user may run as root\n.TP\n.I /usr/share/doc/certkeeper\nthe README and the examples (nginx, Apache, Vault setup, Ansible role)\n")
	b.WriteString(".SH EXIT STATUS\n0 on success; 1 when a command failed (for once: when any certificate is not in place); 2 for usage errors.\n")
	b.WriteString(".SH SEE ALSO\n.BR nginx (8),\n.BR apache2 (8),\n.BR vault (1)\n")
	return b.String()
}

// writeReference renders the config reference: a subsection per block, a
// tagged paragraph per key.
func writeReference(b *strings.Builder, ref config.Reference) {
	b.WriteString(".SH CONFIGURATION\n")
	for _, p := range ref.Intro {
		b.WriteString(".PP\n" + roffEscape(p) + "\n")
	}
	for _, s := range ref.Sections {
		// Quoted, so the labels' own quotes survive as \(dq.
		b.WriteString(".SS \"" + strings.ReplaceAll(roffEscape(s.Title), `"`, `\(dq`) + "\"\n")
		if s.Text != "" {
			b.WriteString(roffEscape(s.Text) + "\n")
		}
		for _, k := range s.Keys {
			b.WriteString(".TP\n\\fB" + roffEscape(k.Form) + "\\fR\n" + roffEscape(k.Text) + "\n")
		}
	}
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
