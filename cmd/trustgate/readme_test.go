package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestReadmeCommandTableListsEveryCommand compares the README's command
// table with the commands the CLI registers: every runnable command is in
// the table, and every command the table names exists.
func TestReadmeCommandTableListsEveryCommand(t *testing.T) {
	src, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := readmeCommands(t, string(src))
	var registered []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			if sub.Runnable() && !sub.HasAvailableSubCommands() {
				registered = append(registered, strings.TrimPrefix(sub.CommandPath(), "trustgate "))
			}
			walk(sub)
		}
	}
	walk(rootCommand())
	if len(registered) < 20 {
		t.Fatalf("only %d commands registered: %v", len(registered), registered)
	}
	for _, c := range registered {
		if !documented[c] {
			t.Errorf("`trustgate %s` is not in the README's command table", c)
		}
	}
	for c := range documented {
		if !slices.Contains(registered, c) {
			t.Errorf("the README's command table names `trustgate %s`, which the CLI does not have", c)
		}
	}
}

// readmeCommands reads the first column of the README's "## Commands"
// table. A cell holds one or more code spans (`trustgate protocol lint
// FILE` / `protocol withdraw …`); within a span, " \| " separates
// alternatives that replace the last word (`reviews list \| show ID`).
func readmeCommands(t *testing.T, readme string) map[string]bool {
	t.Helper()
	start := strings.Index(readme, "\n## Commands\n")
	if start < 0 {
		t.Fatal("README.md has no `## Commands` section")
	}
	span := regexp.MustCompile("`([^`]+)`")
	word := regexp.MustCompile(`^[a-z][a-z-]*$`)
	lead := func(s string) []string {
		var ws []string
		for _, w := range strings.Fields(s) {
			if !word.MatchString(w) {
				break
			}
			ws = append(ws, w)
		}
		return ws
	}
	cmds := map[string]bool{}
	for _, line := range strings.Split(readme[start:], "\n")[2:] {
		if strings.HasPrefix(line, "## ") {
			break
		}
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cell := strings.SplitN(strings.ReplaceAll(line[1:], `\|`, "\x00"), "|", 2)[0]
		for _, m := range span.FindAllStringSubmatch(cell, -1) {
			alts := strings.Split(strings.TrimPrefix(m[1], "trustgate "), " \x00 ")
			path := lead(alts[0])
			if len(path) == 0 || path[0] == "make" {
				continue
			}
			cmds[strings.Join(path, " ")] = true
			for _, alt := range alts[1:] {
				if ws := lead(alt); len(ws) > 0 {
					cmds[strings.Join(append(slices.Clone(path[:len(path)-1]), ws...), " ")] = true
				}
			}
		}
	}
	return cmds
}
