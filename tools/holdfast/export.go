package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/export"
	"github.com/holdfast-appliance/holdfast/services/store"
)

// secretKeyEnv can carry the export's secret key instead of --secret-key
// (which other users can read in the process list).
const secretKeyEnv = "HOLDFAST_EXPORT_SECRET_KEY"

type exportFlags struct {
	keyFile, configPath, listen, accessKey, secretKey string
	tlsCert, tlsKey, certOut                          string
	sources                                           []string
}

func (a *app) exportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Serve a store read-only over the S3 API",
		Long: `The export subcommands serve a store's snapshots, read-only, to S3 clients
(rclone, mc, minio-go, another Holdfast appliance). See docs/export.md.`,
		Args: subcommandArgs,
		RunE: missingSubcommand,
	}
	cmd.AddCommand(a.exportServeCmd())
	return cmd
}

func (a *app) exportServeCmd() *cobra.Command {
	f := &exportFlags{}
	c := &cobra.Command{
		Use:   "serve STORE --key-file F (--config cfg.hcl | --access-key K --secret-key S) [--listen ADDR]",
		Short: "Serve the store's snapshots over HTTPS with the S3 API until interrupted",
		Long: `serve opens STORE read-only (no lock, no recovery, nothing written) and
serves its snapshots over HTTPS with the S3 API, path-style, until it is
interrupted (Ctrl-C, SIGTERM). Each source is a bucket; its keys are
SNAPSHOT-ID/original-key for every snapshot, and latest/original-key for
the source's newest complete snapshot. Reads only: every PUT, POST and
DELETE is refused (AccessDenied), and so is every request that is not
signed (AWS Signature V4) with the access key given. It needs no root and
no write access to STORE.

The settings come from the export block of --config (the appliance's
configuration, see docs/config.md), or from the flags, which also override
the file: --listen (default 127.0.0.1:9443 without --config), --access-key,
--secret-key (or the environment variable ` + secretKeyEnv + `, which
other users cannot read in the process list), --source (repeatable: serve
only these sources), --tls-cert and --tls-key (PEM files). Without a
certificate a self-signed one is generated; its SHA-256 fingerprint is
printed, and --cert-out writes it as PEM for clients to trust (rclone
--ca-cert, mc --certs-dir, ca_bundle of another appliance).

The listen address is printed on stdout once the export serves.`,
		Example: `  holdfast export serve /srv/hf --key-file hf.key --access-key reader --secret-key 'a-long-random-secret' --cert-out export.pem
  HOLDFAST_EXPORT_SECRET_KEY=... holdfast export serve /srv/hf --key-file hf.key --access-key reader --listen 0.0.0.0:9443
  holdfast export serve /srv/hf --key-file hf.key --config /etc/holdfast/cfg.hcl
  rclone --ca-cert export.pem copy hf:mail-archive/latest ./mail   # hf: an s3 remote, provider Other`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runExportServe(cmd, args[0], f)
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.keyFile, "key-file", "", "file holding the store's master key (required)")
	fl.StringVar(&f.configPath, "config", "", "configuration file whose export block to use")
	fl.StringVar(&f.listen, "listen", "", "address to listen on, host:port (default 127.0.0.1:9443, or the config's)")
	fl.StringVar(&f.accessKey, "access-key", "", "access key clients sign with")
	fl.StringVar(&f.secretKey, "secret-key", "", "its secret, at least 16 characters (or $"+secretKeyEnv+")")
	fl.StringArrayVar(&f.sources, "source", nil, "serve only this source (repeatable)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate (chain), PEM")
	fl.StringVar(&f.tlsKey, "tls-key", "", "its private key, PEM")
	fl.StringVar(&f.certOut, "cert-out", "", "write the certificate served (PEM) to this file")
	_ = c.MarkFlagRequired("key-file")
	return c
}

// exportSettings merges the config's export block with the flags.
func exportSettings(cmd *cobra.Command, f *exportFlags) (config.Export, error) {
	var e config.Export
	if f.configPath != "" {
		cf, err := config.Load(f.configPath)
		if err != nil {
			return e, usageErrorf("--config: %w", err)
		}
		if cf.Export == nil {
			return e, usageErrorf("--config %s has no export block (see docs/config.md)", f.configPath)
		}
		e = *cf.Export
	} else {
		e.Listen = "127.0.0.1:9443"
	}
	changed := cmd.Flags().Changed
	if changed("listen") {
		e.Listen = f.listen
	}
	if changed("access-key") {
		e.AccessKey = f.accessKey
	}
	switch {
	case changed("secret-key"):
		e.SecretKey = config.Secret(f.secretKey)
	case os.Getenv(secretKeyEnv) != "":
		e.SecretKey = config.Secret(os.Getenv(secretKeyEnv))
	}
	if changed("source") {
		e.Sources = f.sources
	}
	if changed("tls-cert") != changed("tls-key") {
		return e, usageErrorf("give --tls-cert and --tls-key together")
	}
	if changed("tls-cert") {
		certPEM, err := os.ReadFile(f.tlsCert)
		if err != nil {
			return e, usageErrorf("--tls-cert: %w", err)
		}
		keyPEM, err := os.ReadFile(f.tlsKey)
		if err != nil {
			return e, usageErrorf("--tls-key: %w", err)
		}
		e.CertFile, e.KeyFile, e.CertPEM, e.KeyPEM = f.tlsCert, f.tlsKey, certPEM, config.Secret(keyPEM)
	}
	if e.AccessKey == "" || e.SecretKey == "" {
		return e, usageErrorf("the export needs an access key and a secret key: --access-key and --secret-key (or $%s), or --config", secretKeyEnv)
	}
	if err := export.CheckCredential(e.AccessKey, e.SecretKey.Reveal()); err != nil {
		return e, usageError{err}
	}
	if _, _, err := net.SplitHostPort(e.Listen); err != nil {
		return e, usageErrorf("--listen %q: want host:port", e.Listen)
	}
	return e, nil
}

func (a *app) runExportServe(cmd *cobra.Command, dir string, f *exportFlags) error {
	ctx := cmd.Context()
	e, err := exportSettings(cmd, f)
	if err != nil {
		return err
	}
	srv, err := export.FromConfig(ctx, dir, store.KeyFile(f.keyFile), e, a.log)
	switch {
	case errors.Is(err, store.ErrWrongKey):
		return fmt.Errorf("%s: %w (key file %s)", dir, err, f.keyFile)
	case err != nil:
		return err
	}
	if f.certOut != "" {
		if err := os.WriteFile(f.certOut, srv.CertificatePEM(), 0o644); err != nil {
			return fmt.Errorf("--cert-out: %w", err)
		}
	}
	ln, err := net.Listen("tcp", e.Listen)
	if err != nil {
		return fmt.Errorf("export: listen on %s: %w", e.Listen, err)
	}
	which := "all sources"
	if e.Sources != nil {
		which = "sources " + strings.Join(e.Sources, ", ")
	}
	fmt.Fprintf(a.stdout, "serving %s of %s read-only at https://%s/ (path-style S3, access key %s)\n", which, dir, ln.Addr(), e.AccessKey)
	fmt.Fprintf(a.stdout, "certificate SHA-256 fingerprint %s\n", srv.Fingerprint())
	if f.certOut != "" {
		fmt.Fprintf(a.stdout, "certificate written to %s\n", f.certOut)
	}
	return srv.Serve(ctx, ln)
}
