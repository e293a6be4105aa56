package main

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/proteus-defense/proteus/enclave"
)

// enclaveSubcommands are the factories of `proteus enclave ...`; each enclave*.go file
// registers its own with addEnclaveCommand in init().
var enclaveSubcommands []func() *cobra.Command

func addEnclaveCommand(f func() *cobra.Command) { enclaveSubcommands = append(enclaveSubcommands, f) }

func init() {
	addCommand(func() *cobra.Command {
		c := &cobra.Command{
			Use:   "enclave",
			Short: "Peer-to-peer defense enclaves: keys, membership, a standalone node, and its control commands",
			Args:  cobra.NoArgs,
		}
		for _, f := range enclaveSubcommands {
			c.AddCommand(f())
		}
		return c
	})
	addEnclaveCommand(newEnclaveKeygenCmd)
	addEnclaveCommand(newEnclaveIDCmd)
	addEnclaveCommand(newEnclaveAdmitCmd)
	addEnclaveCommand(newEnclaveSealKeyCmd)
}

func newEnclaveKeygenCmd() *cobra.Command {
	var out string
	var output *string
	c := &cobra.Command{
		Use:   "keygen",
		Short: "Make a new enclave signing key (Ed25519, PEM, mode 0600) and print its public key for enclave.key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			if out == "" {
				return fmt.Errorf("%w: --out FILE is required", errUsage)
			}
			k, err := enclave.GenerateEnclaveKey()
			if err != nil {
				return err
			}
			if err := enclave.WriteEnclaveKey(out, k); err != nil {
				return err
			}
			pub := enclave.PublicKeyString(k.Public().(ed25519.PublicKey))
			if *output == "json" {
				return printJSON(cmd.OutOrStdout(), map[string]string{"key_file": out, "public_key": pub})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "enclave key written to %s (keep it offline; it admits members)\nput this in every member's config:\n  enclave:\n    key: %s\n", out, pub)
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "", "file to write the private key to (must not exist)")
	output = outputFlag(c)
	return c
}

func newEnclaveIDCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "id",
		Short: "Print this node's peer ID (creating its identity in the data dir on first use); `admit` certifies it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := os.MkdirAll(globals.dataDir, 0o700); err != nil {
				return err
			}
			k, err := enclave.LoadIdentity(globals.dataDir)
			if err != nil {
				return err
			}
			id, err := enclave.PeerIDOf(k)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), id)
			return nil
		},
	}
}

func newEnclaveAdmitCmd() *cobra.Command {
	var keyFile, name, out string
	var valid time.Duration
	c := &cobra.Command{
		Use:   "admit PEER-ID",
		Short: "Sign a membership certificate for PEER-ID with the enclave key; the member sets enclave.certificate to it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := peer.Decode(args[0])
			if err != nil {
				return fmt.Errorf("%w: %q is not a peer ID: %v", errUsage, args[0], err)
			}
			if keyFile == "" || name == "" {
				return fmt.Errorf("%w: --key and --enclave are required", errUsage)
			}
			if valid <= 0 {
				return fmt.Errorf("%w: --valid must be > 0", errUsage)
			}
			k, err := enclave.ReadEnclaveKey(keyFile)
			if err != nil {
				return err
			}
			cert, err := enclave.Admit(k, name, id, time.Now(), valid)
			if err != nil {
				return fmt.Errorf("%w: %v", errUsage, err)
			}
			data := append(cert.Marshal(), '\n')
			if out == "" {
				_, err = cmd.OutOrStdout().Write(data)
				return err
			}
			if err := os.WriteFile(out, data, 0o600); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "certificate for %s in enclave %q valid until %s written to %s\n", id, name, cert.Expires.Format(time.RFC3339), out)
			return nil
		},
	}
	c.Flags().StringVar(&keyFile, "key", "", "enclave private key file (from keygen)")
	c.Flags().StringVar(&name, "enclave", "", "enclave name (enclave.name)")
	c.Flags().StringVar(&out, "out", "", "write the certificate here instead of stdout")
	c.Flags().DurationVar(&valid, "valid", 365*24*time.Hour, "how long the membership lasts")
	return c
}

func newEnclaveSealKeyCmd() *cobra.Command {
	var keyFile, name, out string
	var epoch uint32
	c := &cobra.Command{
		Use:   "seal-key --key FILE --enclave NAME --epoch N --out FILE",
		Short: "Derive the enclave's seal key of an epoch from the enclave key; members list it in enclave.seal_keys",
		Long: "Derive the seal key of epoch N (HKDF-SHA256 of the enclave key) and write it as a key file (mode 0600).\n" +
			"Every member that lists it in enclave.seal_keys seals what it sends with its newest key and reads\n" +
			"what is sealed with any listed key. To cut a member out, give the others the key of the next epoch.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyFile == "" || name == "" || out == "" {
				return fmt.Errorf("%w: --key, --enclave and --out are required", errUsage)
			}
			if epoch == 0 {
				return fmt.Errorf("%w: --epoch must be >= 1", errUsage)
			}
			k, err := enclave.ReadEnclaveKey(keyFile)
			if err != nil {
				return err
			}
			sk, err := enclave.DeriveSealKey(k, name, epoch)
			if err != nil {
				return err
			}
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			if _, err := f.Write(sk.Marshal()); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "seal key of epoch %d for enclave %q written to %s (give it to members with their certificate; add it to enclave.seal_keys)\n", epoch, name, out)
			return nil
		},
	}
	c.Flags().StringVar(&keyFile, "key", "", "enclave private key file (from keygen)")
	c.Flags().StringVar(&name, "enclave", "", "enclave name (enclave.name)")
	c.Flags().Uint32Var(&epoch, "epoch", 1, "key epoch (raise it to rotate)")
	c.Flags().StringVar(&out, "out", "", "file to write the key to (must not exist)")
	return c
}
