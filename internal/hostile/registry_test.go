package hostile

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// What an agency system knows of the Trust: the registry (who the partners
// are, which roles each may assert) and the appointments docs/security.md
// publishes.

type role struct {
	ID        string `yaml:"id"`
	Appointed bool   `yaml:"appointed"`
	HeldBy    *struct {
		Types    []string `yaml:"types"`
		Partners []string `yaml:"partners"`
	} `yaml:"held_by"`
}

type partner struct {
	ID   string `yaml:"id"`
	Type string `yaml:"type"`
}

type trust struct {
	ID       string    `yaml:"id"`
	Roles    []role    `yaml:"roles"`
	Partners []partner `yaml:"partners"`
}

func readTrust(t *testing.T, dir string) trust {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "protocols", "trust.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var tr trust
	if err := yaml.Unmarshal(b, &tr); err != nil {
		t.Fatal(err)
	}
	return tr
}

func (tr trust) partnerIDs() []string {
	var ids []string
	for _, p := range tr.Partners {
		ids = append(ids, p.ID)
	}
	sort.Strings(ids)
	return ids
}

func (tr trust) typeOf(p string) string {
	for _, x := range tr.Partners {
		if x.ID == p {
			return x.Type
		}
	}
	return ""
}

// mayHold: the role's held_by admits the partner (a role without one: any).
func (tr trust) mayHold(p, r string) bool {
	for _, x := range tr.Roles {
		if x.ID != r {
			continue
		}
		if x.HeldBy == nil {
			return true
		}
		return slices.Contains(x.HeldBy.Partners, p) || slices.Contains(x.HeldBy.Types, tr.typeOf(p))
	}
	return false
}

// heldRoles are the roles, not appointed, that the partner may assert.
func (tr trust) heldRoles(p string) []string {
	var rs []string
	for _, x := range tr.Roles {
		if !x.Appointed && tr.mayHold(p, x.ID) {
			rs = append(rs, x.ID)
		}
	}
	return rs
}

func (tr trust) appointedRoles() []string {
	var rs []string
	for _, x := range tr.Roles {
		if x.Appointed {
			rs = append(rs, x.ID)
		}
	}
	return rs
}

// appointment is a row of docs/security.md's table of the demo's
// appointments.
type appointment struct{ ID, Partner, Practitioner, Role, Scope string }

func readAppointments(t *testing.T) []appointment {
	t.Helper()
	f, err := os.Open("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var as []appointment
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "| appt-") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 5 {
			t.Fatalf("appointment row %q", line)
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		scope := strings.Fields(cells[4])[0]
		as = append(as, appointment{cells[0], cells[1], cells[2], cells[3], scope})
	}
	if len(as) < 5 {
		t.Fatalf("only %d appointments in docs/security.md", len(as))
	}
	return as
}

func appointed(as []appointment, p, sub, r string) (appointment, bool) {
	for _, a := range as {
		if a.Partner == p && a.Practitioner == sub && a.Role == r {
			return a, true
		}
	}
	return appointment{}, false
}
