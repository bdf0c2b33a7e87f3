package config_test

import (
	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/telemetry"
	"github.com/certkeeper/certkeeper/templates"
)

// withTemplates loads with the real template and web configuration
// checkers, whose messages the testdata pin.
var withTemplates = config.Options{Templates: templates.Checker{}, WebConfig: telemetry.WebConfigChecker{}}
