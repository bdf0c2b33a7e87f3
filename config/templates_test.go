package config_test

import (
	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/templates"
)

// withTemplates loads with the real template checker, whose messages the
// testdata pin.
var withTemplates = config.Options{Templates: templates.Checker{}}
