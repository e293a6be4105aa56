package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/proteus-defense/proteus/demo"
	// The docker executor driver registers itself as "docker" from init().
	"github.com/proteus-defense/proteus/executor/docker"
)

func init() {
	addCommand(func() *cobra.Command {
		var tag, binary, impl, host string
		c := &cobra.Command{
			Use:   "docker-image",
			Short: "Build the demo site image (FROM scratch, this binary + the site) for the docker driver and print its pinned reference",
			Long: "Builds a FROM-scratch image holding a statically linked proteus binary and the demo site at /site,\n" +
				"through the Docker Engine's build API (no registry needed), and prints the reference pinned by\n" +
				"image ID (NAME:TAG@sha256:...) to use as an executor's image. The binary must be built with\n" +
				"CGO_ENABLED=0. Inside the image: demo-server --impl IMPL --listen :8080 --root /site.",
			Hidden: true,
			Args: func(_ *cobra.Command, args []string) error {
				if len(args) > 0 {
					return fmt.Errorf("%w: docker-image takes no arguments, got %q", errUsage, args)
				}
				return nil
			},
			RunE: func(cmd *cobra.Command, _ []string) error {
				if _, err := docker.ParsePin(tag + "@sha256:" + fmt.Sprintf("%064x", 0)); err != nil {
					return fmt.Errorf("%w: --tag %q: %v", errUsage, tag, err)
				}
				if binary == "" {
					exe, err := os.Executable()
					if err != nil {
						return fmt.Errorf("docker-image: %w", err)
					}
					binary = exe
				}
				d, err := docker.New(docker.Options{Host: host})
				if err != nil {
					return err
				}
				defer d.Close()
				site, err := os.MkdirTemp("", "proteus-site-")
				if err != nil {
					return fmt.Errorf("docker-image: %w", err)
				}
				defer os.RemoveAll(site)
				if err := demo.WriteSite(site); err != nil {
					return fmt.Errorf("docker-image: %w", err)
				}
				ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Minute)
				defer cancel()
				ref, err := docker.BuildImage(ctx, d.Client(), docker.ScratchImage{
					Tag:    tag,
					Binary: binary,
					Cmd:    []string{"demo-server", "--impl", impl, "--listen", ":8080", "--root", "/site"},
					Files:  map[string]string{"/site": site},
				})
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), ref)
				fmt.Fprintf(cmd.ErrOrStderr(), "built %s from %s (engine %s); container port 8080, site at /site\n", ref, binary, d.Host())
				return nil
			},
		}
		c.Flags().StringVar(&tag, "tag", "proteus-demo:latest", "name[:tag] to give the image")
		c.Flags().StringVar(&binary, "binary", "", "statically linked proteus binary to put in the image (default: this executable)")
		c.Flags().StringVar(&impl, "impl", "nethttp", "default demo-server implementation (an executor's command can pick another)")
		c.Flags().StringVar(&host, "docker-host", "", "Docker Engine address (default $DOCKER_HOST, else unix:///var/run/docker.sock)")
		return c
	})
}
