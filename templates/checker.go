package templates

import (
	"time"

	"github.com/certkeeper/certkeeper/config"
)

// Checker is how a config load checks template blocks
// (config.TemplateChecker): a dry run against a certificate shaped like
// the one the block's certificate asks for.
type Checker struct {
	// Now dates the placeholder certificate; nil means time.Now.
	Now func() time.Time
}

var _ config.TemplateChecker = Checker{}

// Stock returns the text of the stock template name.
func (Checker) Stock(name string) (string, bool) {
	in, ok := Stock(name)
	return in.Text, ok
}

// StockNames lists the stock templates.
func (Checker) StockNames() []string { return StockNames() }

// Check dry-runs t for c; see config.TemplateChecker.
func (k Checker) Check(t config.Template, c config.Certificate) (bool, error) {
	sample := Certificate{
		Name:       c.Name,
		CommonName: c.CommonName,
		DNSNames:   c.AltNames,
		URISANs:    c.URISANs,
		KeyType:    c.KeyType,
		KeyBits:    c.KeyBits,
	}
	for _, ip := range c.IPSANs {
		sample.IPSANs = append(sample.IPSANs, ip.String())
	}
	now := time.Now
	if k.Now != nil {
		now = k.Now
	}
	res, err := check(InputOf(t), sample, now())
	if err != nil {
		return false, err
	}
	return res.IncludesKey, nil
}

// InputOf is a configured template as this package reads it, named in
// messages by its source path, "stock NAME" or "contents".
func InputOf(t config.Template) Input {
	name := t.Source
	switch {
	case t.Stock != "":
		name = "stock " + t.Stock
	case name == "":
		name = "contents"
	}
	return Input{Name: name, Text: t.Text, LeftDelim: t.LeftDelim, RightDelim: t.RightDelim}
}
