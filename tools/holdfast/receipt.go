package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/holdfast-appliance/holdfast/firmware/receipt"
)

// receiptCmd groups the commands on signed snapshot receipts.
func (a *app) receiptCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "receipt",
		Short: "Check the TPM-signed receipts of snapshots",
		Long: `Every snapshot the appliance commits gets a receipt: a TPM2_Quote by a key
that lives in the appliance's TPM, over the SHA-256 of the snapshot's
manifest, carrying the TPM clock (clock, resetCount, restartCount, safe).
Receipts are kept in STORE/receipts/<id>.receipt; the signing key's public
half is a PEM file the console exports.`,
		Args: subcommandArgs,
		RunE: missingSubcommand,
	}
	c.AddCommand(a.receiptVerifyCmd())
	return c
}

func (a *app) receiptVerifyCmd() *cobra.Command {
	var pubPath, manifestPath string
	c := &cobra.Command{
		Use:   "verify RECEIPT --pubkey KEY.pem [--manifest FILE]",
		Short: "Verify a receipt offline (no TPM needed)",
		Long: `verify checks a receipt against the appliance's receipt key (PEM PKIX):
that it was signed by that key, that the signed data is a TPM quote, and
that the quote binds the receipt's snapshot ID and manifest digest. With
--manifest it also checks that the manifest file (STORE/snapshots/<id>.snap)
has that digest. It prints what the receipt vouches for and exits 1 if any
check fails.`,
		Example: `  holdfast receipt verify /srv/holdfast/receipts/20260101T000000Z-0011aabb.receipt \
      --pubkey holdfast-receipts.pem \
      --manifest /srv/holdfast/snapshots/20260101T000000Z-0011aabb.snap`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			pemBytes, err := os.ReadFile(pubPath)
			if err != nil {
				return fmt.Errorf("read public key: %w", err)
			}
			pub, err := receipt.ParsePublicKeyPEM(pemBytes)
			if err != nil {
				return fmt.Errorf("%s: %w", pubPath, err)
			}
			raw, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("read receipt: %w", err)
			}
			r, err := receipt.Verify(raw, pub)
			if err != nil {
				return fmt.Errorf("receipt %s: INVALID: %w", args[0], err)
			}
			if manifestPath != "" {
				f, err := os.Open(manifestPath)
				if err != nil {
					return fmt.Errorf("read manifest: %w", err)
				}
				defer f.Close()
				if err := r.CheckManifest(f); err != nil {
					return fmt.Errorf("receipt %s: INVALID for %s: %w", args[0], manifestPath, err)
				}
			}
			return printReceipt(a, r, manifestPath)
		},
	}
	c.Flags().StringVar(&pubPath, "pubkey", "", "the appliance's receipt public key (PEM PKIX) (required)")
	c.Flags().StringVar(&manifestPath, "manifest", "", "the manifest file the receipt should vouch for")
	c.MarkFlagRequired("pubkey")
	return c
}

func printReceipt(a *app, r *receipt.Receipt, manifestPath string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "receipt OK\n")
	fmt.Fprintf(&b, "snapshot:         %s\n", r.SnapshotID)
	fmt.Fprintf(&b, "manifest sha256:  %x\n", r.ManifestDigest)
	if manifestPath != "" {
		fmt.Fprintf(&b, "manifest file:    %s (matches)\n", manifestPath)
	} else {
		fmt.Fprintf(&b, "manifest file:    not checked (use --manifest)\n")
	}
	fmt.Fprintf(&b, "signing key id:   %x\n", r.KeyID)
	fmt.Fprintf(&b, "tpm clock:        %d ms powered on\n", r.Clock.Clock)
	fmt.Fprintf(&b, "tpm reset count:  %d\n", r.Clock.ResetCount)
	fmt.Fprintf(&b, "tpm restarts:     %d\n", r.Clock.RestartCount)
	fmt.Fprintf(&b, "tpm clock safe:   %v\n", r.Clock.Safe)
	fmt.Fprintf(&b, "quoted PCRs:      %v (sha256 digest %x)\n", r.PCRs, r.PCRDigest)
	if !r.Clock.Safe {
		fmt.Fprintf(&b, "warning: the TPM clock was not safe when signing (a power cut may have rolled it back)\n")
	}
	_, err := a.stdout.Write([]byte(b.String()))
	if err != nil {
		return errors.Join(errors.New("write output"), err)
	}
	return nil
}
