package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/proteus-defense/proteus/enclave"
)

func init() { addEnclaveCommand(newEnclaveExpelCmd) }

func newEnclaveExpelCmd() *cobra.Command {
	var keyFile, name, list string
	var publish bool
	var output *string
	c := &cobra.Command{
		Use:   "expel PEER-ID...",
		Short: "End members' membership early: add them to the enclave's signed revocation list (--list FILE) and, with --publish, hand it to the running node, which spreads it",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			if keyFile == "" || name == "" || list == "" {
				return fmt.Errorf("%w: --key, --enclave and --list are required", errUsage)
			}
			var ids []peer.ID
			for _, a := range args {
				id, err := peer.Decode(a)
				if err != nil {
					return fmt.Errorf("%w: %q is not a peer ID: %v", errUsage, a, err)
				}
				ids = append(ids, id)
			}
			k, err := enclave.ReadEnclaveKey(keyFile)
			if err != nil {
				return err
			}
			prev, err := enclave.ReadMemberRevocations(list)
			if errors.Is(err, fs.ErrNotExist) {
				prev, err = nil, nil
			}
			if err != nil {
				return err
			}
			l, err := enclave.RevokeMembers(k, name, prev, ids, time.Now())
			if err != nil {
				return fmt.Errorf("%w: %v", errUsage, err)
			}
			if err := os.WriteFile(list, append(l.Marshal(), '\n'), 0o600); err != nil {
				return err
			}
			res := enclave.RevokeMembersResult{Serial: l.Serial, Revoked: len(l.Peers)}
			if publish {
				cl, err := dialEnclave(cmd.Context())
				if err != nil {
					return err
				}
				if res, err = cl.RevokeMembers(cmd.Context(), l); err != nil {
					return err
				}
			}
			if *output == "json" {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revocation list %s: serial %d, %d revoked members\n", list, l.Serial, len(l.Peers))
			if publish {
				fmt.Fprintf(cmd.OutOrStdout(), "running node adopted it: %v\n", res.Adopted)
			}
			return nil
		},
	}
	c.Flags().StringVar(&keyFile, "key", "", "enclave private key file (from keygen)")
	c.Flags().StringVar(&name, "enclave", "", "enclave name (enclave.name)")
	c.Flags().StringVar(&list, "list", "", "the revocation list file to extend (created if missing)")
	c.Flags().BoolVar(&publish, "publish", false, "hand the new list to the node running on --data-dir")
	output = outputFlag(c)
	return c
}
