package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/proteus-defense/proteus/demo"
)

func init() {
	addCommand(func() *cobra.Command {
		var o demo.Options
		c := &cobra.Command{
			Use:    "demo-server",
			Short:  "Serve the built-in demo site with one HTTP implementation (used by the default executors)",
			Hidden: true,
			Args:   cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if o.Listen == "" || o.Root == "" {
					return fmt.Errorf("%w: demo-server needs --listen and --root", errUsage)
				}
				ctx, stop := untilSignal(cmd.Context())
				defer stop()
				o.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
				err := demo.Serve(ctx, o)
				if errors.Is(err, demo.ErrUnknownImpl) || errors.Is(err, demo.ErrUnknownWeakness) {
					return fmt.Errorf("%w: %v", errUsage, err)
				}
				return err
			},
		}
		c.Flags().StringVar(&o.Impl, "impl", "nethttp", "implementation: nethttp, fasthttp, raw, nginx or lighttpd")
		c.Flags().StringVar(&o.Listen, "listen", "", "host:port to listen on")
		c.Flags().StringVar(&o.Root, "root", "", "directory holding the site")
		c.Flags().StringVar(&o.Weakness, "weak", "", "deliberately weaken the implementation (proteus demo): file-include (nethttp only)")
		c.Flags().StringVar(&o.Dir, "dir", "", "directory for generated server configs (nginx, lighttpd); default the current directory")
		return c
	})
}
