package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// formatValue is the --format flag of a command that prints a result:
// "text" (for people, the default) or "json" (for programs). It sets the
// command's asJSON switch, so that the older --json flags keep working.
type formatValue struct{ json *bool }

func (f formatValue) String() string {
	if f.json != nil && *f.json {
		return "json"
	}
	return "text"
}

func (f formatValue) Set(s string) error {
	switch s {
	case "text":
		*f.json = false
	case "json":
		*f.json = true
	default:
		return fmt.Errorf("%q is not one of text, json", s)
	}
	return nil
}

func (formatValue) Type() string { return "text|json" }

// addFormat gives cmd the --format text|json flag, bound to asJSON.
func addFormat(cmd *cobra.Command, asJSON *bool) {
	cmd.Flags().Var(formatValue{asJSON}, "format", "output format: text or json")
}

// emit prints a command's result: the value itself as JSON with
// --format json (for programs; the same value whatever the text says), or
// what text writes for people. Every command that prints a result prints
// it through emit.
func emit(cmd *cobra.Command, asJSON bool, v any, text func(w io.Writer)) error {
	if asJSON {
		return printJSON(cmd.OutOrStdout(), v)
	}
	text(cmd.OutOrStdout())
	return nil
}

// printJSON writes v as indented JSON and a newline.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
