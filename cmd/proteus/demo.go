package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/demo/attack"
	"github.com/proteus-defense/proteus/demo/live"
)

// demoContext is the context `proteus demo` runs under; tests replace it.
var demoContext = untilSignal

type demoFlags struct {
	addrs   live.Addrs
	attack  bool
	once    bool
	verbose bool
}

// `proteus demo` runs the whole agent on the demo's embedded configuration (demo/live) and,
// with --attack, plays the scripted attack against it (demo/attack).
func init() {
	addCommand(func() *cobra.Command {
		var f demoFlags
		c := &cobra.Command{
			Use:   "demo [--attack [--once]]",
			Short: "Run the whole agent on the demo shop with nothing installed (dashboard, engine, sensors); --attack plays a scripted attack against it",
			Long: `Run the whole agent on one machine with nothing installed: the demo shop in three
heterogeneous variants (one deliberately weakened) behind the mimic voting gateway, rotated
every 30-90 s, the inference engine on the paper's model with the sensors that need no root
(EVE JSON, file integrity on the executors, an SSH decoy, the gateway's dissent), the audit
store and the dashboard. It prints the shop's and the dashboard's URLs and a one-time login
link. Its state is in DATA-DIR/demo (or --data-dir), emptied at every start.

--attack plays a scripted attack, one line per step: reconnaissance, a request only the
weakened variant answers (the vote masks it), a tampered file in one executor, IDS alerts of
an exploit attempt (the attacker, at 127.0.0.66, gets blocked). With a demo already running
on the data dir it attacks that one (watch its dashboard) and exits; otherwise it starts one
and attacks it once it serves. --once stops the demo after the attack (exit 1 if a step drew
no defense).`,
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return runDemo(cmd, f) },
		}
		c.Flags().BoolVar(&f.attack, "attack", false, "play the scripted attack against the demo")
		c.Flags().BoolVar(&f.once, "once", false, "with --attack: stop the demo when the attack is over")
		c.Flags().BoolVarP(&f.verbose, "verbose", "v", false, "log the agent's info messages (rotations, decisions) to stderr")
		c.Flags().StringVar(&f.addrs.Gateway, "listen", live.DefaultAddrs.Gateway, "the shop's host:port (the voting gateway)")
		c.Flags().StringVar(&f.addrs.API, "api", live.DefaultAddrs.API, "the API's and the dashboard's host:port")
		c.Flags().StringVar(&f.addrs.Decoy, "decoy", live.DefaultAddrs.Decoy, "the SSH decoy's host:port")
		return c
	})
}

// demoDataDir is --data-dir when given, else the default data dir's demo/ subdirectory (the
// demo empties it at each start, so it must not be a real agent's).
func demoDataDir(cmd *cobra.Command) string {
	if cmd.Flags().Changed("data-dir") || cmd.Root().PersistentFlags().Changed("data-dir") {
		return globals.dataDir
	}
	return filepath.Join(globals.dataDir, "demo")
}

func runDemo(cmd *cobra.Command, f demoFlags) error {
	if f.once && !f.attack {
		return fmt.Errorf("%w: --once needs --attack", errUsage)
	}
	out := cmd.OutOrStdout()
	dir := demoDataDir(cmd)
	if f.attack {
		r, err := live.Attach(dir)
		if err == nil {
			ctx, stop := untilSignal(cmd.Context())
			defer stop()
			fmt.Fprintf(out, "proteus demo: attacking the demo running on %s (dashboard %s)\n", r.DataDir, r.Dashboard)
			return playAttack(ctx, out, r)
		}
		if !errors.Is(err, live.ErrNotRunning) {
			return err
		}
	}
	ctx, stop := demoContext(cmd.Context())
	defer stop()
	level := "warn"
	if f.verbose {
		level = "info"
	}
	var attackErr error
	attackDone := make(chan struct{})
	started := false // set in Ready, which Run calls on this goroutine
	err := live.Run(ctx, live.Options{DataDir: dir, Addrs: f.addrs, Logger: newLogger(cmd.ErrOrStderr(), config.Log{Level: level}),
		Ready: func(r live.Ready) {
			printDemo(out, r, f.attack)
			if !f.attack {
				return
			}
			started = true
			go func() {
				defer close(attackDone)
				attackErr = playAttack(ctx, out, r)
				if f.once {
					stop()
					return
				}
				fmt.Fprintf(out, "the demo keeps running: %s shows the whole story; Ctrl-C stops it\n", r.Dashboard)
			}()
		}})
	stop()
	if started {
		<-attackDone // it ends with ctx
	}
	if err != nil {
		return err
	}
	return attackErr
}

func printDemo(w io.Writer, r live.Ready, attacking bool) {
	fmt.Fprintf(w, "proteus demo: %d executors of %d HTTP implementations (%s deliberately weakened) behind the voting gateway, rotated every 30-90 s; the engine on the paper's model\n",
		r.Executors, r.Variants, live.WeakVariant)
	fmt.Fprintf(w, "  shop:      %s\n", r.Shop)
	fmt.Fprintf(w, "  dashboard: %s\n", r.Dashboard)
	fmt.Fprintf(w, "  log in:    %s\n", r.Login.URL)
	fmt.Fprintf(w, "             (one use, until %s; `proteus dashboard --data-dir %s` prints another)\n", r.Login.Expires.Local().Format("15:04:05"), r.DataDir)
	fmt.Fprintf(w, "  data dir:  %s (config %s; `proteus decisions --data-dir %s`)\n", r.DataDir, filepath.Base(r.ConfigFile), r.DataDir)
	if !attacking {
		fmt.Fprintf(w, "  attack it: `proteus demo --attack` in another terminal, and watch the dashboard; Ctrl-C stops the demo\n")
	}
}

// playAttack plays the scripted attack against r and prints one line per step.
func playAttack(ctx context.Context, w io.Writer, r live.Ready) error {
	t := attack.Target{DataDir: r.DataDir, Shop: r.Gateway, Decoy: r.Decoy, EVE: r.EVEFile, From: r.Attacker, WeakVariant: live.WeakVariant}
	err := attack.Play(ctx, t, func(s attack.Step) {
		fmt.Fprintf(w, "attack %d/%d %s: %s -> %s [events: %s]\n", s.N, s.Of, s.Name, s.Did, s.Defense, eventCounts(s.Events))
	})
	if err != nil {
		fmt.Fprintf(w, "attack stopped: %v\n", err)
		return err
	}
	fmt.Fprintf(w, "attack over: every step drew a defense; %s has each decision's whole story\n", r.Dashboard)
	return nil
}

func eventCounts(m map[string]int) string {
	kinds := make([]string, 0, len(m))
	for k := range m {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for i, k := range kinds {
		kinds[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	if len(kinds) == 0 {
		return "none"
	}
	return strings.Join(kinds, ", ")
}
