package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// EnvAdminToken names the environment variable that overrides admin.token,
// so the secret need not be written into the file.
const EnvAdminToken = "DEDUPCACHE_ADMIN_TOKEN"

// Error is one problem with one configuration value. [Load], [Config.Set]
// and [Config.Validate] return *Error values, several joined with
// [errors.Join]; use [errors.As] to inspect the first.
type Error struct {
	// Origin says where the value came from: "config.yaml:14" for a file,
	// "flag -max-memory" or "$DEDUPCACHE_ADMIN_TOKEN" for overrides, and
	// empty for a built-in default.
	Origin string
	// Field is the dotted YAML path, e.g. "cache.max_memory" or
	// "cache.targeted_cache_control[1]"; empty when the problem concerns the
	// whole file.
	Field string
	// Problem says what is wrong, e.g. `"12XB" is not a size (want e.g. 512MiB)`.
	Problem string
}

// Error renders "origin: field: problem", leaving out the empty parts.
func (e *Error) Error() string {
	var b strings.Builder
	for _, s := range []string{e.Origin, e.Field} {
		if s != "" {
			b.WriteString(s)
			b.WriteString(": ")
		}
	}
	b.WriteString(e.Problem)
	return b.String()
}

// Load reads the YAML file at path over [Default] and returns the result
// without validating it: apply overrides, then call [Config.Validate].
//
// The file is checked against Config field by field, so every problem names
// the file, the line and the dotted field, e.g.
//
//	config.yaml:14: cache.max_memory: "12XB" is not a size (want e.g. 512MiB)
//	config.yaml:7: cache.max_memroy: unknown field
//
// All problems are reported, joined with [errors.Join]. Unknown and repeated
// fields are errors. An empty file, like an empty or null value, keeps the
// defaults. On error the returned Config is the zero value.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	c := Default()
	if err := c.decode(path, data); err != nil {
		return Config{}, err
	}
	return c, nil
}

// decode applies the YAML document in data (read from file) over c.
func (c *Config) decode(file string, data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return syntaxError(file, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return syntaxError(file, err)
	default:
		return &Error{Origin: fmt.Sprintf("%s:%d", file, extra.Line), Problem: "a second YAML document; put all settings in one"}
	}
	root := &doc
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil
		}
		root = doc.Content[0]
	}
	d := decoder{file: file, origins: maps.Clone(c.origins)}
	if d.origins == nil {
		d.origins = make(map[string]string)
	}
	d.value(reflect.ValueOf(c).Elem(), root, "")
	c.origins = d.origins
	return errors.Join(d.errs...)
}

// syntaxError turns the parser's "yaml: line 3: msg" into "file:3: msg".
func syntaxError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, problem, ok := strings.Cut(rest, ": "); ok {
			if _, err := strconv.Atoi(num); err == nil {
				return &Error{Origin: file + ":" + num, Problem: problem}
			}
		}
	}
	return &Error{Origin: file, Problem: msg}
}

// Set parses value into the field named by its dotted YAML path (e.g.
// "cache.max_memory") exactly as [Load] parses a YAML string there, and
// records origin (e.g. "flag -max-memory") as the value's source for later
// error messages. A list field takes a comma-separated value. main uses Set
// to apply the flags that were given on top of the file.
func (c *Config) Set(field, value, origin string) error {
	v, ok := fieldByPath(reflect.ValueOf(c).Elem(), field)
	if !ok {
		return &Error{Origin: origin, Field: field, Problem: "unknown field"}
	}
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value}
	if v.Kind() == reflect.Slice {
		n = &yaml.Node{Kind: yaml.SequenceNode}
		for _, s := range strings.Split(value, ",") {
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: strings.TrimSpace(s)})
		}
	}
	d := decoder{origin: origin, origins: maps.Clone(c.origins)}
	if d.origins == nil {
		d.origins = make(map[string]string)
	}
	d.value(v, n, field)
	if len(d.errs) > 0 {
		return errors.Join(d.errs...)
	}
	c.origins = d.origins
	return nil
}

// ApplyEnv applies the environment overrides, reading variables with getenv
// (os.Getenv in main): a non-empty $DEDUPCACHE_ADMIN_TOKEN replaces
// admin.token. Variables that are unset or empty change nothing.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	if t := getenv(EnvAdminToken); t != "" {
		return c.Set("admin.token", t, "$"+EnvAdminToken)
	}
	return nil
}

// origin returns where field's value came from, "" for a default. An element
// of a list without its own record falls back to the list's.
func (c *Config) origin(field string) string {
	if o, ok := c.origins[field]; ok {
		return o
	}
	if i := strings.LastIndexByte(field, '['); i > 0 {
		return c.origins[field[:i]]
	}
	return ""
}

// decoder walks a YAML node tree against a Go value, collecting problems
// instead of stopping at the first. Either file is set (values come from a
// file, origins are file:line) or origin is (values come from an override).
type decoder struct {
	file    string
	origin  string
	origins map[string]string // field path -> origin, filled as values are set
	errs    []error
}

func (d *decoder) at(n *yaml.Node) string {
	if d.file == "" {
		return d.origin
	}
	return fmt.Sprintf("%s:%d", d.file, n.Line)
}

func (d *decoder) fail(n *yaml.Node, field, format string, args ...any) {
	d.errs = append(d.errs, &Error{Origin: d.at(n), Field: field, Problem: fmt.Sprintf(format, args...)})
}

// value sets v, the field at path, from n. A null node keeps the default.
// The walk descends only as deep as Config's own type nesting (structs,
// lists, pointers to structs), so cyclic aliases (legal in YAML) cannot make
// it loop.
func (d *decoder) value(v reflect.Value, n *yaml.Node, path string) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if u, ok := v.Addr().Interface().(yaml.Unmarshaler); ok {
		if err := u.UnmarshalYAML(n); err != nil {
			d.fail(n, path, "%s", err)
			return
		}
		d.origins[path] = d.at(n)
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.mapping(v, n, path)
		return
	case reflect.Slice:
		d.list(v, n, path)
		return
	case reflect.Pointer:
		d.pointer(v, n, path)
		return
	}
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "want %s, got %s", kindName(v.Kind()), describe(n))
		return
	}
	if err := setScalar(v, n.Value); err != nil {
		d.fail(n, path, "%s", err)
		return
	}
	d.origins[path] = d.at(n)
}

func (d *decoder) mapping(v reflect.Value, n *yaml.Node, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping of settings, got %s", describe(n))
		return
	}
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode || isNull(k) {
			d.fail(k, path, "want a field name, got %s", describe(k))
			continue
		}
		field := fieldName(k.Value)
		if path != "" {
			field = path + "." + field
		}
		if line, dup := seen[k.Value]; dup {
			d.fail(k, field, "repeated field (first set on line %d)", line)
			continue
		}
		seen[k.Value] = k.Line
		f, ok := fieldByName(v, k.Value)
		if !ok {
			d.fail(k, field, "unknown field")
			continue
		}
		d.value(f, val, field)
	}
}

// list sets v, a list of strings, integers or structs, from the sequence n.
// The list is replaced as a whole, and only if every element is valid.
func (d *decoder) list(v reflect.Value, n *yaml.Node, path string) {
	elem := v.Type().Elem()
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "want a list %s, got %s", listExample(elem.Kind()), describe(n))
		return
	}
	list := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	before := len(d.errs)
	for i, e := range n.Content {
		e = resolve(e)
		field := fmt.Sprintf("%s[%d]", path, i)
		if elem.Kind() == reflect.Struct {
			d.mapping(list.Index(i), e, field)
			d.origins[field] = d.at(e)
			continue
		}
		if e.Kind != yaml.ScalarNode || isNull(e) {
			d.fail(e, field, "want %s, got %s", kindName(elem.Kind()), describe(e))
			continue
		}
		if err := setScalar(list.Index(i), e.Value); err != nil {
			d.fail(e, field, "%s", err)
			continue
		}
		d.origins[field] = d.at(e)
	}
	if len(d.errs) == before {
		v.Set(list)
		d.origins[path] = d.at(n)
	}
}

// listExample shows what a list of elements of kind k looks like.
func listExample(k reflect.Kind) string {
	switch k {
	case reflect.Struct:
		return "with one mapping of settings per entry"
	case reflect.Int, reflect.Int64:
		return "such as [200, 404]"
	}
	return "such as [CDN-Cache-Control]"
}

// pointer sets v, a pointer to a struct, to a new struct decoded from n
// over a copy of what v pointed to, so that copies of a Config that share
// the old struct do not see the change. v is left alone if n has problems.
func (d *decoder) pointer(v reflect.Value, n *yaml.Node, path string) {
	p := reflect.New(v.Type().Elem())
	if !v.IsNil() {
		p.Elem().Set(v.Elem())
	}
	before := len(d.errs)
	d.mapping(p.Elem(), n, path)
	if len(d.errs) == before {
		v.Set(p)
		d.origins[path] = d.at(n)
	}
}

// setScalar parses s into v, a string, bool, integer or float field.
func setScalar(v reflect.Value, s string) error {
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		switch s {
		case "true", "True", "TRUE":
			v.SetBool(true)
		case "false", "False", "FALSE":
			v.SetBool(false)
		default:
			return fmt.Errorf("want true or false, got %s", quote(s))
		}
	case reflect.Int, reflect.Int64:
		i, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("want an integer, got %s", quote(s))
		}
		v.SetInt(i)
	case reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("want a number, got %s", quote(s))
		}
		v.SetFloat(f)
	default:
		panic("config: no parser for field kind " + v.Kind().String())
	}
	return nil
}

func kindName(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.Float64:
		return "a number"
	}
	return "a " + k.String()
}

// fieldByName returns the field of struct v whose yaml tag is name.
func fieldByName(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag == name && t.Field(i).IsExported() {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// fieldByPath follows a dotted path of yaml tags from struct v.
func fieldByPath(v reflect.Value, path string) (reflect.Value, bool) {
	for name := range strings.SplitSeq(path, ".") {
		if v.Kind() != reflect.Struct {
			return reflect.Value{}, false
		}
		var ok bool
		if v, ok = fieldByName(v, name); !ok {
			return reflect.Value{}, false
		}
	}
	return v, true
}

// fieldName returns name for use in a dotted path, quoted unless it looks
// like a field name, so an odd key cannot break a message over lines.
func fieldName(name string) string {
	ok := name != "" && len(name) <= 64 && strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == ""
	if ok {
		return name
	}
	return quote(name)
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 16; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names what a node holds, for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a sequence"
	case yaml.AliasNode:
		return "an alias"
	}
	if isNull(n) {
		return "null"
	}
	return quote(n.Value)
}

// quote quotes s for a message, shortened so a stray blob does not flood it.
func quote(s string) string {
	if r := []rune(s); len(r) > 40 {
		s = string(r[:40]) + "..."
	}
	return strconv.Quote(s)
}
