package templates

import (
	"embed"
	"slices"
	"strings"
)

// The stock templates ship inside the binary, so `stock = "haproxy"` works
// on a host with nothing but certkeeper installed.
//
//go:embed stock/*.tmpl
var stockFS embed.FS

// Stock returns the stock template with that name.
func Stock(name string) (Input, bool) {
	if strings.ContainsAny(name, "/.\\") {
		return Input{}, false
	}
	text, err := stockFS.ReadFile("stock/" + name + ".tmpl")
	if err != nil {
		return Input{}, false
	}
	return Input{Name: "stock " + name, Text: string(text)}, true
}

// StockNames lists the stock templates, sorted.
func StockNames() []string {
	entries, _ := stockFS.ReadDir("stock")
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".tmpl"))
	}
	slices.Sort(names)
	return names
}
