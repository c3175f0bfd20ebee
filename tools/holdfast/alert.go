package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/holdfast-appliance/holdfast/services/alert"
	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/ingest"
)

// alertDrainTimeout bounds how long a command waits, before it exits, for
// its queued alerts to go out.
const alertDrainTimeout = 30 * time.Second

// pullAlerter returns the alerter a pull uses: the dispatcher of cfg's
// alerts block (mail, webhook and the log), or the log alone without one.
// done waits (up to alertDrainTimeout, or until ctx ends) for queued alerts
// to go out and logs what could not be delivered.
func pullAlerter(ctx context.Context, cfg *config.File, log hclog.Logger) (al ingest.Alerter, done func(), err error) {
	if cfg.Alerts == nil {
		return ingest.LogAlerter{Log: log.Named("alert")}, func() {}, nil
	}
	d, err := alert.FromConfig(cfg, log.Named("alert"))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", cfg.Path, err)
	}
	return d, func() {
		cctx, cancel := context.WithTimeout(ctx, alertDrainTimeout)
		defer cancel()
		if err := d.Close(cctx); err != nil {
			log.Error("alerts not delivered before exit", "error", err)
		}
	}, nil
}

// pullFailedAlert raises a pull-failed alert for a pull of source that
// returned err (res is its result, nil when no snapshot was made).
func pullFailedAlert(ctx context.Context, al ingest.Alerter, source string, res *ingest.Result, err error, log hclog.Logger) {
	a := ingest.Alert{Kind: alert.KindPullFailed, Source: source,
		Message: fmt.Sprintf("pull of source %q failed: %v", source, err)}
	if res != nil {
		a.Snapshot = res.Snapshot
		if errors.Is(err, ingest.ErrIncomplete) {
			a.Message = fmt.Sprintf("pull of source %q committed snapshot %s incomplete: %d objects left out, %d errors recorded (holdfast store ls STORE %s lists them)",
				source, res.Snapshot, res.Failed, len(res.Errors), res.Snapshot)
		}
		a.Details = map[string]string{
			"objects": fmt.Sprint(res.Objects), "fetched": fmt.Sprint(res.Fetched), "failed": fmt.Sprint(res.Failed),
		}
	}
	if aerr := al.Alert(ctx, a); aerr != nil {
		log.Error("alert not delivered", "error", aerr, "alert", a.Message)
	}
}

func (a *app) alertCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alert",
		Short: "Check the alert senders of a configuration",
		Long: `The alert subcommands work with the alerts block of a configuration
(docs/config.md): mail through an SMTP relay with STARTTLS, and a signed JSON
POST to an HTTPS webhook.`,
		Example: `  holdfast alert test --config /etc/holdfast/cfg.hcl`,
		Args:    subcommandArgs,
		RunE:    missingSubcommand,
	}
	cmd.AddCommand(a.alertTestCmd())
	return cmd
}

func (a *app) alertTestCmd() *cobra.Command {
	var cfgPath, source string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "test --config FILE [--source NAME] [--timeout 1m]",
		Short: "Send one test alert through each configured sender",
		Long: `test sends one alert of kind "test" through each sender of the
configuration's alerts block (SMTP, then the webhook), once each, with no
retry and no rate limit, and prints one line per sender: "sent" or the
error (for example a relay that does not offer STARTTLS, a certificate not
trusted, a refused login, or the webhook's HTTP status).

Exit status 1 when any sender failed or the configuration has no alerts
block.`,
		Example: `  holdfast alert test --config cfg.hcl
  holdfast alert test --config cfg.hcl --timeout 10s`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.alertTest(cmd.Context(), cfgPath, source, timeout)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgPath, "config", "", "configuration file (HCL; see docs/config.md)")
	f.StringVar(&source, "source", "", "source named in the test alert (default: none)")
	f.DurationVar(&timeout, "timeout", time.Minute, "time allowed to each sender")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

func (a *app) alertTest(ctx context.Context, cfgPath, source string, timeout time.Duration) error {
	if timeout <= 0 {
		return usageErrorf("--timeout %s: want a positive duration", timeout)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	if cfg.Alerts == nil {
		return fmt.Errorf("%s has no alerts block: alerts go to the log only (see docs/config.md)", cfgPath)
	}
	senders, err := alert.NewSenders(cfg.Alerts, cfg.Appliance.Name)
	if err != nil {
		return fmt.Errorf("%s: %w", cfgPath, err)
	}
	host, _ := os.Hostname()
	m := alert.Message{
		Appliance: cfg.Appliance.Name,
		Alert: ingest.Alert{
			Kind: alert.KindTest, Source: source, Time: time.Now().UTC(),
			Message: fmt.Sprintf("test alert sent by \"holdfast alert test\" on %s; no action is needed", host),
		},
	}
	var failed []string
	for _, s := range senders {
		sctx, cancel := context.WithTimeout(ctx, timeout)
		err := s.Send(sctx, m)
		cancel()
		if err != nil {
			fmt.Fprintf(a.stdout, "%s: FAILED: %v\n", s.Name(), err)
			failed = append(failed, s.Name())
			continue
		}
		fmt.Fprintf(a.stdout, "%s: sent\n", s.Name())
	}
	if len(failed) > 0 {
		return fmt.Errorf("test alert not delivered by %s", strings.Join(failed, ", "))
	}
	return nil
}
