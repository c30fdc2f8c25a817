package rules

import (
	"os/exec"
	"strings"
	"testing"
)

// TestOnlyConfigImports keeps the package graph honest: rules is pure
// matching and key logic over configured values, so of dedupcache it may
// import config alone; the packages that serve requests import it.
func TestOnlyConfigImports(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found:", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "dedupcache/") && dep != "dedupcache/rules" && dep != "dedupcache/config" {
			t.Errorf("rules depends on %s; want only dedupcache/config", dep)
		}
	}
}
