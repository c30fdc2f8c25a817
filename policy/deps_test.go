package policy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoProjectImports keeps the package graph honest: policy is pure logic
// and imports nothing else from dedupcache, so that it can be tested and
// fuzzed alone and never grows I/O.
func TestNoProjectImports(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found:", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "dedupcache/") && dep != "dedupcache/policy" {
			t.Errorf("policy depends on %s; want no dedupcache/ imports", dep)
		}
	}
}
