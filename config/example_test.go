package config

import (
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

const exampleFile = "../config.example.yaml"

// TestExampleFile checks that config.example.yaml loads, validates, shows
// every field, and shows each at its default (upstream aside).
func TestExampleFile(t *testing.T) {
	c, err := Load(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("Warnings: %q; want none", w)
	}
	for _, field := range leafFields(reflect.TypeFor[Config](), "") {
		if c.origins[field] == "" {
			t.Errorf("%s is missing from %s", field, exampleFile)
		}
	}
	if c.Upstream == "" {
		t.Errorf("upstream is empty; want an example URL")
	}
	c.Upstream = ""
	c.origins = nil
	if want := Default(); !reflect.DeepEqual(c, want) {
		t.Errorf("%s differs from Default():\n got %+v\nwant %+v", exampleFile, c, want)
	}
}

// leafFields lists the dotted YAML paths of all settings in t.
func leafFields(t reflect.Type, prefix string) []string {
	var out []string
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if prefix != "" {
			name = prefix + "." + name
		}
		if f.Type.Kind() == reflect.Struct {
			out = append(out, leafFields(f.Type, name)...)
		} else {
			out = append(out, name)
		}
	}
	return out
}

// TestImportsNothingOurs keeps config a leaf: main copies its values into
// the other packages' own Config types.
func TestImportsNothingOurs(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for dep := range strings.FieldsSeq(string(out)) {
		if strings.HasPrefix(dep, "dedupcache/") && dep != "dedupcache/config" {
			t.Errorf("config imports %s", dep)
		}
	}
}
