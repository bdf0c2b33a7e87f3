package templates

import (
	"encoding/base64"
	"strings"
	"testing"
)

// TestRenderErrorsCarryNoData: a template that fails on the real
// certificate, through a function that quotes its argument (parseInt,
// parseBool, sprig_fail, ...) or an action that prints the value it cannot
// use (range), must not bring the key, or any other part of the data,
// into the error: errors go to logs, status and /v1/status.
func TestRenderErrorsCarryNoData(t *testing.T) {
	cert, err := NewCertificate("web", testBundle(t, "ec", 256))
	if err != nil {
		t.Fatal(err)
	}
	// secrets are pieces of the data that must not appear: each line of
	// the key, the key in base64, and the certificate's own values.
	var secrets []string
	for _, pemText := range []string{cert.Key, cert.Cert} {
		for _, l := range strings.Split(pemText, "\n") {
			if len(l) >= 16 && !strings.HasPrefix(l, "-----") {
				secrets = append(secrets, l)
			}
		}
	}
	secrets = append(secrets, base64.StdEncoding.EncodeToString([]byte(cert.Key))[:40], cert.Serial, cert.FingerprintSHA256)

	tests := []struct {
		name, text string
		// want is a part of the message that must remain: where it failed.
		want string
	}{
		{"parseInt", "{{ with certificate }}\n{{ parseInt .Key }}{{ end }}", "line 2: at <parseInt .Key>: error calling parseInt"},
		{"parseFloat", "{{ with certificate }}{{ parseFloat .Key }}{{ end }}", "at <parseFloat .Key>"},
		{"parseUint of the encoded key", "{{ with certificate }}{{ .Key | base64Encode | parseUint }}{{ end }}", "at <parseUint>"},
		{"parseBool", "{{ with certificate }}{{ parseBool .Key }}{{ end }}", "at <parseBool .Key>"},
		{"sprig_fail", "{{ with certificate }}{{ sprig_fail .Key }}{{ end }}", "at <sprig_fail .Key>: error calling sprig_fail"},
		{"sprig_fail of the whole value", "{{ with certificate }}{{ sprig_fail (printf \"%v\" .) }}{{ end }}", "error calling sprig_fail"},
		{"sprig_mustToDate", `{{ with certificate }}{{ sprig_mustToDate "2006" .Key }}{{ end }}`, "at <sprig_mustToDate"},
		{"range over the key", "{{ with certificate }}{{ range .Key }}{{ end }}{{ end }}", "line 1"},
		{"range over the certificate", "{{ range certificate }}{{ end }}", "line 1"},
		{"fails only on the real data", "{{ with certificate }}{{ if ne .Issuer \"certkeeper validate sample issuing CA\" }}{{ sprig_fail (print .Serial .Key) }}{{ end }}{{ end }}",
			"at <sprig_fail (print .Serial .Key)>: failed on this certificate's data; the engine's message is withheld"},
		{"the serial", "{{ with certificate }}{{ parseInt .Serial }}{{ end }}", "at <parseInt .Serial>"},
	}
	for _, tt := range tests {
		_, err := Render(Input{Text: tt.text}, cert)
		if err == nil {
			t.Errorf("%s: rendered without error", tt.name)
			continue
		}
		msg := err.Error()
		for _, s := range secrets {
			if strings.Contains(msg, s) {
				t.Errorf("%s: the error carries the data (%.20s...):\n%s", tt.name, s, msg)
				break
			}
		}
		if !strings.Contains(msg, tt.want) {
			t.Errorf("%s: error %q does not say %q", tt.name, msg, tt.want)
		}
	}
}

// TestRenderErrorsStillExplain: a failure that does not depend on the data
// keeps the engine's message, which validate's dry run shows too.
func TestRenderErrorsStillExplain(t *testing.T) {
	cert, err := NewCertificate("web", testBundle(t, "ec", 256))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Render(Input{Text: "{{ with certificate }}\n{{ index .DNSNames 7 }}{{ end }}"}, cert)
	if want := "line 2: at <index .DNSNames 7>: error calling index: index out of range: 7"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	_, err = Render(Input{Text: "{{ with certificate }}{{ parseInt .Key }}{{ end }}"}, cert)
	if err == nil || !strings.Contains(err.Error(), "certkeeper-validate-sample-private-key") || !strings.Contains(err.Error(), "as rendered against validate's sample certificate") {
		t.Errorf("a data-quoting failure should be explained with the sample: %v", err)
	}
}
