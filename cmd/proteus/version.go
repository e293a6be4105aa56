package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

func init() {
	addCommand(func() *cobra.Command {
		return &cobra.Command{
			Use:   "version",
			Short: "Print the version, commit and Go version",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				v, commit := buildVersion()
				fmt.Fprintf(cmd.OutOrStdout(), "proteus %s (commit %s, %s %s/%s)\n", v, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
				return nil
			},
		}
	})
}

// buildVersion is the version and commit of this binary: -ldflags -X main.version when set,
// else the module version the go command stamped (go install ...@v1.2.3 gives v1.2.3; a build
// in a clone gives the pseudo-version of its commit); the commit from the VCS stamp, else the
// one a pseudo-version names.
func buildVersion() (v, commit string) {
	v, commit = version, "unknown"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v, commit
	}
	if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			commit = s.Value
		}
	}
	if commit == "unknown" {
		commit = pseudoCommit(v)
	}
	return v, commit
}

// pseudoCommit is the commit prefix a pseudo-version names (v0.0.0-20261202130000-abcdef123456,
// possibly with +dirty), else "unknown".
func pseudoCommit(v string) string {
	base, _, _ := strings.Cut(v, "+")
	i := strings.LastIndexByte(base, '-')
	if i < 0 || len(base)-i-1 != 12 || strings.Trim(base[i+1:], "0123456789abcdef") != "" {
		return "unknown"
	}
	return base[i+1:]
}
