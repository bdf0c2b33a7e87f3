package main

import (
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/config"
)

// TestManPageHasEveryConfigKey: the man page renders the config reference
// (which config's own test keeps complete), block by block.
func TestManPageHasEveryConfigKey(t *testing.T) {
	page := manPage(usage, "test")
	_, conf, ok := strings.Cut(page, ".SH CONFIGURATION\n")
	if !ok {
		t.Fatal("the man page has no CONFIGURATION section")
	}
	for _, s := range config.LoadReference().Sections {
		if !strings.Contains(conf, ".SS \""+strings.ReplaceAll(s.Title, `"`, `\(dq`)+"\"\n") {
			t.Errorf("man page lacks the block %s", s.Title)
		}
		for _, k := range s.Keys {
			if !strings.Contains(conf, ".TP\n\\fB"+roffEscape(k.Form)+"\\fR\n") {
				t.Errorf("man page lacks %s in %s", k.Name, s.Title)
			}
		}
	}
}
