package server

import "testing"

// The one-pass check of member names agrees with the structural one.
func TestExactNames(t *testing.T) {
	known := knownFields(&DecisionRequest{})
	cases := []struct {
		body string
		ok   bool
	}{
		{`{"subject":"9990000018","provider":"p","purpose":"x","categories":["a","b"]}`, true},
		{` { "subject" : "a,}]" , "categories" : [ {"x":[1,2]}, "y" ] , "justification":"q\"uote" } `, true},
		{`{"Subject":"9990000018"}`, false},
		{`{"subject":"1","extra":{"a":1}}`, false},
		{`{"categories":[],"override_ground":"x","purpose":null,"provider":true}`, true},
		{`{"sub\u006aect":"1"}`, false},
		{`{}`, true},
	}
	for _, c := range cases {
		if got := exactNames([]byte(c.body), known); got != c.ok {
			t.Errorf("exactNames(%s) = %t, want %t", c.body, got, c.ok)
		}
	}
}
