package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// EnvPrefix starts the environment variable of every config key:
// TRUSTGATE_POLICY_DECISION_MEMO sets policy.decision_memo.
const EnvPrefix = "TRUSTGATE_"

var durationType = reflect.TypeOf(Duration{})

// Key is one settable key of the configuration.
type Key struct {
	Name    string // dotted, as in the file: policy.decision_memo
	Type    string // string, int, bool, duration, list
	Default string // as written in the file
	Field   string // the Go struct and field: Policy.DecisionMemo
}

// Env is the key's environment variable.
func (k Key) Env() string { return EnvPrefix + strings.ToUpper(strings.ReplaceAll(k.Name, ".", "_")) }

// AllKeys lists every key of the configuration with its default, in the
// order of the definition.
func AllKeys() []Key {
	var out []Key
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			name := prefix + tag
			fv := v.Field(i)
			if f.Type.Kind() == reflect.Struct && f.Type != durationType {
				walk(fv, name+".")
				continue
			}
			out = append(out, Key{Name: name, Type: typeName(f.Type), Default: show(fv), Field: t.Name() + "." + f.Name})
		}
	}
	walk(reflect.ValueOf(Default()), "")
	return out
}

func typeName(t reflect.Type) string {
	if t == durationType {
		return "duration"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int64:
		return "int"
	case reflect.Slice:
		return "list" // of strings, in YAML flow form on the command line: [a, b]
	}
	return t.Kind().String()
}

func show(v reflect.Value) string {
	if d, ok := v.Interface().(Duration); ok {
		if d.Duration == 0 {
			return "0s"
		}
		return d.String()
	}
	return fmt.Sprint(v.Interface())
}

// field finds the settable field of key in c.
func field(c *Config, key string) (reflect.Value, bool) {
	v := reflect.ValueOf(c).Elem()
	for _, part := range strings.Split(key, ".") {
		if v.Kind() != reflect.Struct || v.Type() == durationType {
			return reflect.Value{}, false
		}
		found := false
		for i := range v.NumField() {
			if strings.Split(v.Type().Field(i).Tag.Get("yaml"), ",")[0] == part {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return reflect.Value{}, false
		}
	}
	if v.Kind() == reflect.Struct && v.Type() != durationType {
		return reflect.Value{}, false // a section, not a key
	}
	return v, true
}

// Set sets one key from its text, as it would be written in the file
// (`--set policy.decision_memo=0`).
func Set(c *Config, key, value string) error {
	f, ok := field(c, key)
	if !ok {
		return fmt.Errorf("config: %w: %s: no such key (docs/config.md)", ErrInvalid, key)
	}
	p := reflect.New(f.Type())
	if err := yaml.Unmarshal([]byte(value), p.Interface()); err != nil {
		return fmt.Errorf("config: %w: %s: %q: %v", ErrInvalid, key, value, err)
	}
	f.Set(p.Elem())
	return nil
}

// ApplyEnv sets every key whose environment variable (Key.Env) is set in
// environ (os.Environ's form). Other TRUSTGATE_ variables, such as the
// client commands' TRUSTGATE_ADDR, are not config keys and are left alone;
// so is an empty variable (set a key to empty with --set KEY=).
func ApplyEnv(c *Config, environ []string) error {
	keys := map[string]string{}
	for _, k := range AllKeys() {
		keys[k.Env()] = k.Name
	}
	slices.Sort(environ)
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if key, ok := keys[name]; ok && value != "" {
			if err := Set(c, key, value); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	return nil
}

// Overrides applies, over a loaded file, the environment and then each
// --set KEY=VALUE, in that order (the Cerbos order: file, environment,
// flags).
func Overrides(c *Config, environ, sets []string) error {
	if err := ApplyEnv(c, environ); err != nil {
		return err
	}
	for _, s := range sets {
		key, value, ok := strings.Cut(s, "=")
		if !ok {
			return fmt.Errorf("config: %w: --set %q is not KEY=VALUE", ErrInvalid, s)
		}
		if err := Set(c, strings.TrimSpace(key), value); err != nil {
			return err
		}
	}
	return nil
}
