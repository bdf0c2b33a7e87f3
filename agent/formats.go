package agent

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/sinks"
	"github.com/certkeeper/certkeeper/templates"
)

// formatted are c's template and PKCS#12 outputs for h. They join the
// same set as the key and certificate, so a template and the key it holds
// change together or not at all; a template that fails to render fails
// the whole set, and the files on disk stay as they were.
func formatted(c config.Certificate, h *held) ([]sinks.File, error) {
	var files []sinks.File
	if len(c.Templates) > 0 {
		view, err := templates.NewCertificate(c.Name, h.bundle)
		if err != nil {
			return nil, err
		}
		for _, t := range c.Templates {
			out, err := h.renders.render(t, view)
			if err != nil {
				return nil, fmt.Errorf("rendering template %s for %s: %w", templates.InputOf(t).Name, t.Destination, err)
			}
			if t.Mode&0o007 != 0 && includesKey(t, out, view.Key) {
				return nil, fmt.Errorf("template output %s includes the private key but its mode %04o lets every user read it; refusing to write it", t.Destination, t.Mode)
			}
			files = append(files, sinks.File{Path: t.Destination, Data: out, Mode: t.Mode, UID: t.UID, GID: t.GID})
		}
	}
	if c.Files.PKCS12 != "" {
		f, err := pkcs12File(c, h)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

// includesKey is a last guard on templates whose mode is open to every
// user (validate refuses the same ones): the template's syntax tree
// decides, since an encoded key (base64Encode, toUpper) does not look like
// a key in the output; the output is searched too, in case a template
// reaches the key in a way the tree does not show.
func includesKey(t config.Template, out []byte, keyPEM string) bool {
	if uses, err := templates.UsesKey(templates.InputOf(t)); err != nil || uses {
		return true
	}
	if bytes.Contains(out, []byte("PRIVATE KEY-----")) {
		return true
	}
	lines := strings.Split(keyPEM, "\n")
	return len(lines) > 1 && len(lines[1]) > 16 && bytes.Contains(out, []byte(lines[1]))
}

// renderMemo keeps what each template rendered for one held certificate.
// A template may use functions whose output changes with every call
// (timestamp); without the memo every restore pass would rewrite the file
// and reload the servers reading it. With it, the output of a template is
// fixed for the life of the certificate in this process.
type renderMemo struct {
	mu  sync.Mutex
	out map[[sha256.Size]byte][]byte
}

func (m *renderMemo) render(t config.Template, view templates.Certificate) ([]byte, error) {
	h := sha256.New()
	for _, s := range []string{t.Destination, t.LeftDelim, t.RightDelim, t.Text} {
		io.WriteString(h, s)
		h.Write([]byte{0})
	}
	var id [sha256.Size]byte
	h.Sum(id[:0])
	m.mu.Lock()
	defer m.mu.Unlock()
	if out, ok := m.out[id]; ok {
		return out, nil
	}
	out, err := templates.Render(templates.InputOf(t), view)
	if err != nil {
		return nil, err
	}
	if m.out == nil {
		m.out = map[[sha256.Size]byte][]byte{}
	}
	m.out[id] = out
	return out, nil
}

// maxPasswordSize bounds what is read from a password file.
const maxPasswordSize = 4096

// pkcs12File is the key, leaf, intermediates and roots in one PKCS#12
// file, encrypted with go-pkcs12's Modern encoder (AES-256-CBC, PBKDF2 and
// HMAC-SHA-256), which OpenSSL 1.1.1+, Java 12+ and Windows Server 2019+
// read.
//
// PKCS#12 encoding is randomised (salts, IVs): encoding the same
// certificate twice gives different bytes. So when the file on disk already
// holds exactly this key and these certificates under this password, its
// bytes are kept; otherwise every pass would rewrite it and reload the
// servers that read it.
func pkcs12File(c config.Certificate, h *held) (sinks.File, error) {
	password, err := readPassword(c.PKCS12PasswordFile)
	if err != nil {
		return sinks.File{}, err
	}
	b := h.bundle
	cas := append(append([]*x509.Certificate{}, b.Intermediates...), b.Roots...)
	file := sinks.File{Path: c.Files.PKCS12, Mode: c.KeyMode, UID: c.UID, GID: c.GID}
	if existing, err := sinks.ReadFile(c.Files.PKCS12); err == nil && pkcs12Holds(existing, password, b.Key, b.Leaf, cas) {
		file.Data = existing
		return file, nil
	}
	data, err := pkcs12.Modern.Encode(b.Key, b.Leaf, cas, password)
	if err != nil {
		return sinks.File{}, fmt.Errorf("encoding %s: %w", c.Files.PKCS12, err)
	}
	file.Data = data
	return file, nil
}

// pkcs12Holds reports whether data decodes with password to exactly key,
// leaf and cas.
func pkcs12Holds(data []byte, password string, key crypto.Signer, leaf *x509.Certificate, cas []*x509.Certificate) bool {
	gotKey, gotLeaf, gotCAs, err := pkcs12.DecodeChain(data, password)
	if err != nil || gotLeaf == nil || !gotLeaf.Equal(leaf) || len(gotCAs) != len(cas) {
		return false
	}
	for i := range cas {
		if !gotCAs[i].Equal(cas[i]) {
			return false
		}
	}
	k, ok := key.(interface{ Equal(crypto.PrivateKey) bool })
	return ok && k.Equal(gotKey)
}

// readPassword reads a PKCS#12 password: the file's content without one
// trailing newline. No file means an empty password, which Java keystores
// and several Windows tools expect. The password never appears in errors.
func readPassword(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("reading pkcs12_password_file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPasswordSize+1))
	if err != nil {
		return "", fmt.Errorf("reading pkcs12_password_file %s: %w", path, err)
	}
	if len(data) > maxPasswordSize {
		return "", errors.New("reading pkcs12_password_file " + path + ": longer than a password can be")
	}
	s := strings.TrimSuffix(string(data), "\n")
	return strings.TrimSuffix(s, "\r"), nil
}

// formattedPaths are the destinations formatted writes.
func formattedPaths(c config.Certificate) []string {
	var out []string
	if c.Files.PKCS12 != "" {
		out = append(out, c.Files.PKCS12)
	}
	for _, t := range c.Templates {
		out = append(out, t.Destination)
	}
	return out
}
