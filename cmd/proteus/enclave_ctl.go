package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/proteus-defense/proteus/enclave"
)

// The commands in this file talk to a running `proteus enclave run` through its control
// API, found via the control file in --data-dir.

func init() {
	addEnclaveCommand(newEnclavePeersCmd)
	addEnclaveCommand(newEnclaveTrustCmd)
	addEnclaveCommand(newEnclavePublishCmd)
	addEnclaveCommand(newEnclaveRevokeCmd)
	addEnclaveCommand(newEnclaveDecisionsCmd)
	addEnclaveCommand(newEnclaveStatusCmd)
}

func ctlErr(err error) error {
	if errors.Is(err, enclave.ErrControl) {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return err
}

func newEnclavePeersCmd() *cobra.Command {
	var output *string
	c := &cobra.Command{
		Use:   "peers",
		Short: "List the running node's peers: membership, trust and GossipSub score",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			cl, err := enclave.Dial(globals.dataDir)
			if err != nil {
				return err
			}
			peers, err := cl.Peers(cmd.Context())
			if err != nil {
				return err
			}
			if *output == "json" {
				return printJSON(cmd.OutOrStdout(), peers)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "PEER\tCONNECTED\tMEMBERSHIP\tIN TOPIC\tTRUST\tSCORE")
			for _, p := range peers {
				score := "-"
				if p.Score != nil {
					score = fmt.Sprintf("%.2f", *p.Score)
				}
				fmt.Fprintf(w, "%s\t%v\t%s\t%v\t%.3f\t%s\n", p.ID, p.Connected, p.Membership, p.InTopic, p.Trust, score)
			}
			return w.Flush()
		},
	}
	output = outputFlag(c)
	return c
}

func newEnclaveTrustCmd() *cobra.Command {
	var output *string
	c := &cobra.Command{
		Use:   "trust",
		Short: "Show the running node's trust table (score in [0,1], corroborated / unconfirmed / invalid reports)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			cl, err := enclave.Dial(globals.dataDir)
			if err != nil {
				return err
			}
			rows, err := cl.Trust(cmd.Context())
			if err != nil {
				return err
			}
			if *output == "json" {
				return printJSON(cmd.OutOrStdout(), rows)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "PEER\tTRUST\tCORROBORATED\tUNCONFIRMED\tINVALID\tUPDATED")
			for _, r := range rows {
				fmt.Fprintf(w, "%s\t%.3f\t%d\t%d\t%d\t%s\n", r.Peer, r.Score, r.Corroborated, r.Unconfirmed, r.Invalid, r.Updated.Format(time.RFC3339))
			}
			return w.Flush()
		},
	}
	output = outputFlag(c)
	return c
}

func newEnclavePublishCmd() *cobra.Command {
	var output *string
	var target, action, desc string
	var confidence int
	var ttl time.Duration
	c := &cobra.Command{
		Use:   "publish --target ADDR|CIDR|port/N",
		Short: "Publish a sighting from the running node (it counts as this agent's own sensor report)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			if _, err := enclave.ParseTarget(target); err != nil {
				return fmt.Errorf("%w: %v", errUsage, err)
			}
			if confidence < 1 || confidence > 100 {
				return fmt.Errorf("%w: --confidence must be in [1,100]", errUsage)
			}
			if action != "block" && action != "watch" {
				return fmt.Errorf("%w: --action must be block or watch", errUsage)
			}
			cl, err := enclave.Dial(globals.dataDir)
			if err != nil {
				return err
			}
			res, err := cl.Publish(cmd.Context(), target, confidence, ttl, action, desc)
			if err != nil {
				return ctlErr(err)
			}
			if *output == "json" {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "published %s about %s until %s; here: %s (evidence %.3f)\n",
				res.Indicator, res.Target, res.Expires.Format(time.RFC3339), res.Decision.Decision, res.Decision.Evidence)
			return nil
		},
	}
	c.Flags().StringVar(&target, "target", "", "what was seen: an address, a CIDR or port/N")
	c.Flags().IntVar(&confidence, "confidence", 90, "confidence 1..100")
	c.Flags().DurationVar(&ttl, "ttl", 10*time.Minute, "how long peers should act")
	c.Flags().StringVar(&action, "action", "block", "recommended action: block or watch")
	c.Flags().StringVar(&desc, "description", "", "free text")
	output = outputFlag(c)
	return c
}

func newEnclaveRevokeCmd() *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   "revoke INDICATOR-ID",
		Short: "Retract one of the running node's sightings; members revert what they did about it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !strings.HasPrefix(args[0], "indicator--") {
				return fmt.Errorf("%w: %q is not an indicator id", errUsage, args[0])
			}
			cl, err := enclave.Dial(globals.dataDir)
			if err != nil {
				return err
			}
			if err := cl.Revoke(cmd.Context(), args[0], reason); err != nil {
				return ctlErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", args[0])
			return nil
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why (sent with the revocation)")
	return c
}

func newEnclaveDecisionsCmd() *cobra.Command {
	var output *string
	var indicator string
	c := &cobra.Command{
		Use:   "decisions",
		Short: "Show the running node's decision log: evidence, reporters and act/defer/ignore/irrelevant per report",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			cl, err := enclave.Dial(globals.dataDir)
			if err != nil {
				return err
			}
			recs, err := cl.Decisions(cmd.Context(), indicator)
			if err != nil {
				return err
			}
			if *output == "json" {
				return printJSON(cmd.OutOrStdout(), recs)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "TIME\tEVENT\tTARGET\tREPORTER\tTRUST\tEVIDENCE\tREPORTERS\tDECISION\tAPPLIED\tWHY")
			for _, r := range recs {
				rep := r.Reporter
				if len(rep) > 12 {
					rep = "…" + rep[len(rep)-8:]
				}
				why := r.Why
				if r.Error != "" {
					why += " (error: " + r.Error + ")"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%.3f\t%.3f\t%d\t%s\t%v\t%s\n", r.Time.Format("15:04:05.000"), r.Event, r.Target,
					rep, r.Trust, r.Evidence, r.Reporters, r.Decision, r.Applied, why)
			}
			return w.Flush()
		},
	}
	c.Flags().StringVar(&indicator, "indicator", "", "only this indicator id")
	output = outputFlag(c)
	return c
}

func newEnclaveStatusCmd() *cobra.Command {
	var output *string
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the running node: peer ID, addresses, peers in the topic and validator counters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			cl, err := enclave.Dial(globals.dataDir)
			if err != nil {
				return err
			}
			st, err := cl.Status(cmd.Context())
			if err != nil {
				return err
			}
			if *output == "json" {
				return printJSON(cmd.OutOrStdout(), st)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "peer %s\nenclave %s (topic %s)\nconnected %d, in topic %d\naccepted %d, rejected %d, non-member %d, ignored %d, denied peers %d\n",
				st.Peer, st.Enclave, st.Topic, st.Connected, st.TopicPeers, st.Stats.Accepted, st.Stats.Rejected,
				st.Stats.NonMember, st.Stats.Ignored, st.Stats.Denied)
			for _, a := range st.Addrs {
				fmt.Fprintf(cmd.OutOrStdout(), "listening %s\n", a)
			}
			return nil
		},
	}
	output = outputFlag(c)
	return c
}
