package policy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoProjectImports keeps the package graph honest: policy is pure HTTP
// caching logic (header values and times in, decisions out, no I/O), so it
// may import the standard library only and nothing else from dedupcache;
// the packages that do I/O import it, never the reverse.
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
