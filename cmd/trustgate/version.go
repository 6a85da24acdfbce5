package main

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// buildInfo is what `trustgate version` reports: the module and the
// version control state the binary was built from (runtime/debug).
type buildInfo struct {
	Module    string `json:"module"`
	Version   string `json:"version"`
	GoVersion string `json:"go_version"`
	Revision  string `json:"vcs_revision,omitempty"`
	Time      string `json:"vcs_time,omitempty"`
	Modified  bool   `json:"vcs_modified"`
}

// buildRevision is set by `make build` (-ldflags -X) from git, for builds
// where Go does not stamp the VCS state itself (-buildvcs=false).
var buildRevision string

func readBuildInfo() (buildInfo, error) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return buildInfo{}, errors.New("this binary carries no build information")
	}
	out := buildInfo{Module: bi.Main.Path, Version: bi.Main.Version, GoVersion: bi.GoVersion}
	if out.Module == "" { // a test binary
		out.Module = bi.Path
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			out.Revision = s.Value
		case "vcs.time":
			out.Time = s.Value
		case "vcs.modified":
			out.Modified = s.Value == "true"
		}
	}
	if out.Revision == "" {
		out.Revision = buildRevision
	}
	return out, nil
}

func versionCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "The module, version and version control state of this binary",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			bi, err := readBuildInfo()
			if err != nil {
				return err
			}
			return emit(cmd, asJSON, bi, func(w io.Writer) {
				fmt.Fprintf(w, "%s %s (%s)\n", bi.Module, bi.Version, bi.GoVersion)
				if bi.Revision != "" {
					line := "revision " + bi.Revision
					if bi.Time != "" {
						line += " " + bi.Time
					}
					if bi.Modified {
						line += " (modified)"
					}
					fmt.Fprintln(w, line)
				}
			})
		},
	}
	addFormat(cmd, &asJSON)
	return cmd
}
