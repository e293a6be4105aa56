package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/enclave"
)

// The commands in this file talk to the enclave node of --data-dir: an agent's node through
// the agent's API (api.EnclaveNodePrefix), a node of `proteus enclave run` through its control
// API, found via the control file in the data dir.

// dialEnclave returns a client of the running agent's enclave node when the agent of
// globals.dataDir answers for one, or else of the node named by the data dir's control file.
func dialEnclave(ctx context.Context) (*enclave.Client, error) {
	if ac, err := api.NewClient(globals.dataDir, ""); err == nil {
		url, token, hc := ac.Endpoint(api.EnclaveNodePrefix)
		cl := enclave.NewClientAt(url, token, hc)
		if _, err := cl.Status(ctx); err == nil {
			return cl, nil
		}
	}
	return enclave.Dial(globals.dataDir)
}

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

// queryEnclave runs a read-only control command: it checks -o, asks the running node of
// --data-dir with get (a client method such as (*enclave.Client).Peers) and prints the
// answer as JSON or with text.
func queryEnclave[T any](cmd *cobra.Command, output string, get func(*enclave.Client, context.Context) (T, error),
	text func(io.Writer, T) error) error {
	if err := checkOutput(output); err != nil {
		return err
	}
	cl, err := dialEnclave(cmd.Context())
	if err != nil {
		return err
	}
	v, err := get(cl, cmd.Context())
	if err != nil {
		return err
	}
	if output == "json" {
		return printJSON(cmd.OutOrStdout(), v)
	}
	return text(cmd.OutOrStdout(), v)
}

func newEnclavePeersCmd() *cobra.Command {
	var output *string
	c := &cobra.Command{
		Use:   "peers",
		Short: "List the running node's peers: membership, trust and GossipSub score",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return queryEnclave(cmd, *output, (*enclave.Client).Peers, writePeers)
		},
	}
	output = outputFlag(c)
	return c
}

func writePeers(out io.Writer, peers []enclave.PeerInfo) error {
	w := newTable(out)
	fmt.Fprintln(w, "PEER\tCONNECTED\tMEMBERSHIP\tIN TOPIC\tTRUST\tSCORE")
	for _, p := range peers {
		score := "-"
		if p.Score != nil {
			score = fmt.Sprintf("%.2f", *p.Score)
		}
		fmt.Fprintf(w, "%s\t%v\t%s\t%v\t%.3f\t%s\n", p.ID, p.Connected, p.Membership, p.InTopic, p.Trust, score)
	}
	return w.Flush()
}

func newEnclaveTrustCmd() *cobra.Command {
	var output *string
	c := &cobra.Command{
		Use:   "trust",
		Short: "Show the running node's trust table (beta reputation in (0,1): reports confirmed / contradicted by own evidence, invalid messages)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return queryEnclave(cmd, *output, (*enclave.Client).Trust, writeTrust)
		},
	}
	output = outputFlag(c)
	return c
}

func writeTrust(out io.Writer, rows []enclave.PeerTrust) error {
	w := newTable(out)
	fmt.Fprintln(w, "PEER\tTRUST\tCONFIRMED\tCONTRADICTED\tINVALID\tPRIOR\tUPDATED")
	for _, r := range rows {
		updated := "-"
		if !r.Updated.IsZero() {
			updated = r.Updated.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s\t%.3f\t%d\t%d\t%d\t%g\t%s\n", r.Peer, r.Score, r.Confirmed, r.Contradicted, r.Invalid, r.Prior, updated)
	}
	return w.Flush()
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
			cl, err := dialEnclave(cmd.Context())
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
			fmt.Fprintf(cmd.OutOrStdout(), "published %s about %s until %s; %s\n",
				res.Indicator, res.Target, res.Expires.Format(time.RFC3339), publishedOutcome(res.Decision))
			return nil
		},
	}
	c.Flags().StringVar(&target, "target", "", "what was seen: an address, a CIDR or port/N")
	c.Flags().IntVar(&confidence, "confidence", 90, "confidence 1..100")
	c.Flags().DurationVar(&ttl, "ttl", 10*time.Minute, "how long the sighting is valid (each peer decides for itself whether to act)")
	c.Flags().StringVar(&action, "action", "block", "recommended action: block or watch")
	c.Flags().StringVar(&desc, "description", "", "free text")
	output = outputFlag(c)
	return c
}

// publishedOutcome says what a published sighting's decision did here: whether a block took
// effect, and why not when the countermeasure refused it.
func publishedOutcome(rec enclave.DecisionRecord) string {
	var what string
	switch {
	case rec.Decision == enclave.Act && rec.Error != "":
		what = "here: act decided but NOT applied: " + printable(rec.Error)
	case rec.Decision == enclave.Act && rec.Applied:
		what = "here: act, countermeasure applied"
	case rec.Decision == enclave.Act:
		what = "here: act decided but NOT applied (a block on it is already in force at least that long)"
	default:
		what = "here: " + string(rec.Decision)
		if rec.Why != "" {
			what += " (" + printable(rec.Why) + ")"
		}
		what += ", no block applied"
		if rec.Error != "" {
			what += "; error: " + printable(rec.Error)
		}
	}
	return fmt.Sprintf("%s (evidence %.3f)", what, rec.Evidence)
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
			cl, err := dialEnclave(cmd.Context())
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
			get := func(cl *enclave.Client, ctx context.Context) ([]enclave.DecisionRecord, error) {
				return cl.Decisions(ctx, indicator)
			}
			return queryEnclave(cmd, *output, get, writeDecisions)
		},
	}
	c.Flags().StringVar(&indicator, "indicator", "", "only this indicator id")
	output = outputFlag(c)
	return c
}

func writeDecisions(out io.Writer, recs []enclave.DecisionRecord) error {
	w := newTable(out)
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
}

func newEnclaveStatusCmd() *cobra.Command {
	var output *string
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the running node: peer ID, addresses, peers in the topic and validator counters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return queryEnclave(cmd, *output, (*enclave.Client).Status, writeEnclaveStatus)
		},
	}
	output = outputFlag(c)
	return c
}

func writeEnclaveStatus(w io.Writer, st enclave.Status) error {
	fmt.Fprintf(w, "peer %s\nenclave %s (topic %s)\nconnected %d, in topic %d\naccepted %d, rejected %d, non-member %d, ignored %d, denied peers %d\n",
		st.Peer, st.Enclave, st.Topic, st.Connected, st.TopicPeers, st.Stats.Accepted, st.Stats.Rejected,
		st.Stats.NonMember, st.Stats.Ignored, st.Stats.Denied)
	for _, a := range st.Addrs {
		fmt.Fprintf(w, "listening %s\n", a)
	}
	return nil
}
