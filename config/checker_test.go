package config

// stubChecker accepts every template, so tests inside the package (which
// cannot import templates: it imports config) can load configs that have
// some. The exact template messages are pinned by config_test.go, which
// loads with the real checker.
type stubChecker struct{}

func (stubChecker) Stock(name string) (string, bool) { return "stock " + name, true }
func (stubChecker) StockNames() []string             { return nil }
func (stubChecker) Check(Template, Certificate) (bool, error) {
	return false, nil
}

var withTemplates = Options{Templates: stubChecker{}}
