package policy

import (
	"encoding/json"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
)

// decodeDecision converts the policy's result object into a Decision
// strictly: every member must be known and of the right JSON type. It
// walks the value directly rather than re-encoding it as JSON, which cost
// a noticeable share of each evaluation.
func decodeDecision(m map[string]any) (*Decision, error) {
	var d Decision
	for k, v := range m {
		var err error
		switch k {
		case "allow":
			d.Allow, err = asBool(k, v)
		case "categories":
			d.Categories, err = asStrings(k, v)
		case "reasons":
			d.Reasons, err = asStrings(k, v)
		case "protocol":
			d.Protocol, err = asProtocolRef(v)
		case "lawful_basis":
			d.LawfulBasis, err = asString(k, v)
		case "basis":
			d.Basis, err = asString(k, v)
		case "override":
			d.Override, err = asBool(k, v)
		case "consents":
			d.Consents, err = asStrings(k, v)
		case "refusals_on_record":
			d.RefusalsOnRecord, err = asStrings(k, v)
		case "obligations":
			d.Obligations, err = asObligations(v)
		case "fields":
			d.Fields, err = asFields(v)
		default:
			err = fmt.Errorf("unknown member %q", k)
		}
		if err != nil {
			return nil, err
		}
	}
	return &d, nil
}

func asBool(k string, v any) (bool, error) {
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("%s: not a boolean", k)
	}
	return b, nil
}

func asString(k string, v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%s: not a string", k)
	}
	return s, nil
}

func asStrings(k string, v any) ([]string, error) {
	a, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: not an array", k)
	}
	out := make([]string, len(a))
	for i, x := range a {
		s, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("%s[%d]: not a string", k, i)
		}
		out[i] = s
	}
	return out, nil
}

func asProtocolRef(v any) (*ProtocolRef, error) {
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("protocol: not an object")
	}
	var p ProtocolRef
	for k, x := range m {
		var err error
		switch k {
		case "id":
			p.ID, err = asString("protocol.id", x)
		case "version":
			p.Version, err = asString("protocol.version", x)
		case "rule":
			p.Rule, err = asString("protocol.rule", x)
		case "title":
			p.Title, err = asString("protocol.title", x)
		default:
			err = fmt.Errorf("protocol: unknown member %q", k)
		}
		if err != nil {
			return nil, err
		}
	}
	return &p, nil
}

func asObligations(v any) ([]Obligation, error) {
	a, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("obligations: not an array")
	}
	out := make([]Obligation, len(a))
	for i, x := range a {
		m, ok := x.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("obligations[%d]: not an object", i)
		}
		for k, y := range m {
			var err error
			switch k {
			case "type":
				out[i].Type, err = asString("obligations.type", y)
			case "partner":
				out[i].Partner, err = asString("obligations.partner", y)
			case "within_days":
				n, ok := y.(json.Number)
				if !ok {
					return nil, fmt.Errorf("obligations[%d].within_days: not a number", i)
				}
				var v int64
				v, err = n.Int64()
				out[i].WithinDays = int(v)
			default:
				err = fmt.Errorf("obligations[%d]: unknown member %q", i, k)
			}
			if err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func asFields(v any) (map[string][]string, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("fields: not an object")
	}
	out := make(map[string][]string, len(m))
	for k, x := range m {
		s, err := asStrings("fields."+k, x)
		if err != nil {
			return nil, err
		}
		out[k] = s
	}
	return out, nil
}

// decodeLookup converts the lookup policy's answer, as the evaluator made
// it, into a Lookup strictly: an object with exactly the known members,
// each of the right type.
func decodeLookup(t *ast.Term) (*Lookup, error) {
	var d Lookup
	n, err := termMembers(t, "", func(name string, v *ast.Term) (err error) {
		switch name {
		case "allow":
			d.Allow, err = termBool("allow", v)
		case "reasons":
			d.Reasons, err = termStrings("reasons", v)
		case "basis":
			d.Basis, err = termString("basis", v)
		case "protocol":
			d.Protocol, err = termProtocolRef(v)
		case "shielded":
			d.Shielded, err = termString("shielded", v)
		case "notify":
			d.Notify, err = termStrings("notify", v)
		default:
			err = fmt.Errorf("unknown member %q", name)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if n != 6 {
		return nil, fmt.Errorf("%d of the 6 members", n)
	}
	return &d, nil
}

// termMembers calls fn with each member of the object t (what names it in
// errors) and returns how many there were.
func termMembers(t *ast.Term, what string, fn func(name string, v *ast.Term) error) (int, error) {
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return 0, fmt.Errorf("%snot an object", what)
	}
	err := obj.Iter(func(k, v *ast.Term) error {
		name, ok := k.Value.(ast.String)
		if !ok {
			return fmt.Errorf("%sa member's name is not a string", what)
		}
		return fn(string(name), v)
	})
	return obj.Len(), err
}

func termBool(k string, t *ast.Term) (bool, error) {
	b, ok := t.Value.(ast.Boolean)
	if !ok {
		return false, fmt.Errorf("%s: not a boolean", k)
	}
	return bool(b), nil
}

func termString(k string, t *ast.Term) (string, error) {
	s, ok := t.Value.(ast.String)
	if !ok {
		return "", fmt.Errorf("%s: not a string", k)
	}
	return string(s), nil
}

func termStrings(k string, t *ast.Term) ([]string, error) {
	a, ok := t.Value.(*ast.Array)
	if !ok {
		return nil, fmt.Errorf("%s: not an array", k)
	}
	out := make([]string, a.Len())
	for i := range out {
		s, ok := a.Elem(i).Value.(ast.String)
		if !ok {
			return nil, fmt.Errorf("%s[%d]: not a string", k, i)
		}
		out[i] = string(s)
	}
	return out, nil
}

func termProtocolRef(t *ast.Term) (*ProtocolRef, error) {
	if _, ok := t.Value.(ast.Null); ok {
		return nil, nil
	}
	var p ProtocolRef
	_, err := termMembers(t, "protocol: ", func(name string, v *ast.Term) (err error) {
		switch name {
		case "id":
			p.ID, err = termString("protocol.id", v)
		case "version":
			p.Version, err = termString("protocol.version", v)
		case "rule":
			p.Rule, err = termString("protocol.rule", v)
		case "title":
			p.Title, err = termString("protocol.title", v)
		default:
			err = fmt.Errorf("protocol: unknown member %q", name)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &p, nil
}
