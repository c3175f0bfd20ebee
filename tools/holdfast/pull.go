package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/ingest"
)

type pullFlags struct {
	config, store, keyFile, source string
}

func (a *app) pullCmd() *cobra.Command {
	pf := &pullFlags{}
	cmd := &cobra.Command{
		Use:   "pull --config FILE --store DIR --key-file FILE [--source NAME]",
		Short: "Pull S3 sources into a store once",
		Long: `pull runs one pull of each source in the configuration (or only --source
NAME) into the store, with the same code the appliance runs on its schedule.
Each pull lists the bucket (every version, when it is versioned), reuses the
objects unchanged since the source's previous snapshot without fetching
them, fetches and checks the rest, and commits one snapshot whose
retain-until comes from the source's retention policy.

Credentials need only read and list rights; pull never writes to a source.
A source that is wiped or mostly rewritten still gets its snapshot, and
raises an alert (an error log line with alert=true); by default the source's
earlier snapshots are then put under legal hold. A pull that fails or
commits an incomplete snapshot raises a pull-failed alert. With an alerts
block in the configuration, alerts are also mailed and/or POSTed to a
webhook; pull waits up to 30s for them to go out before it exits.

On a terminal, a progress bar shows the bytes fetched; otherwise logs are
JSON lines on stderr (level info unless --log-level is given). One summary
line per source goes to stdout.

Exit status 1 when any source failed or its snapshot is incomplete (errors
or bounds hit; "store ls SNAPSHOT" shows the errors it recorded). The
configuration format is described in docs/config.md.`,
		Example: `  holdfast pull --config /etc/holdfast/cfg.hcl --store /srv/hf --key-file /root/hf.key
  holdfast pull --config cfg.hcl --store /srv/hf --key-file hf.key --source mail-archive`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			explicitLevel := cmd.Flags().Changed("log-level")
			return a.pull(cmd.Context(), pf, explicitLevel)
		},
	}
	f := cmd.Flags()
	f.StringVar(&pf.config, "config", "", "configuration file (HCL; see docs/config.md)")
	f.StringVar(&pf.store, "store", "", "store directory")
	f.StringVar(&pf.keyFile, "key-file", "", "file holding the store's master key (64 hex digits)")
	f.StringVar(&pf.source, "source", "", "pull only this source (default: every source)")
	for _, name := range []string{"config", "store", "key-file"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

// barProgress drives a progress bar from a pull.
type barProgress struct{ bar *progressbar.ProgressBar }

func (b barProgress) Planned(objects int, bytes int64) {
	b.bar.ChangeMax64(bytes)
	b.bar.Describe(fmt.Sprintf("%s: %d objects", b.bar.State().Description, objects))
}

func (b barProgress) Transferred(n int) { _ = b.bar.Add(n) }

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func (a *app) pull(ctx context.Context, pf *pullFlags, explicitLevel bool) error {
	cfg, err := config.Load(pf.config)
	if err != nil {
		return err
	}
	sources := cfg.Sources
	if pf.source != "" {
		src, ok := cfg.Source(pf.source)
		if !ok {
			var names []string
			for _, s := range cfg.Sources {
				names = append(names, s.Name)
			}
			return usageErrorf("--source %q: %s defines no such source (it has: %s)", pf.source, pf.config, strings.Join(names, ", "))
		}
		sources = []config.Source{src}
	}
	tty := isTerminal(a.stderr)
	log := a.log
	if !tty {
		level := hclog.Info
		if explicitLevel {
			level = hclog.LevelFromString(a.logLevel)
		}
		log = hclog.New(&hclog.LoggerOptions{Name: "holdfast", Level: level, Output: a.stderr, JSONFormat: true})
		a.log = log // the store logs through it too
	}
	if os.Getenv("GOGC") == "" {
		// The heap is mostly the store's chunk buffers and the listing; a
		// tighter GC target than the default keeps peak RSS well under the
		// appliance's 96 MiB budget for a few percent of CPU.
		debug.SetGCPercent(50)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// GOGC alone lets the heap goal creep up with the index and the
		// listing (measured: 49 MB live at the first full-size GC, 54 MB
		// at the last, goal 80 MB), and peak RSS then reached 97 MiB in
		// some pulls of make bench-pull. A soft limit sized to the working
		// set caps it; the GC runs a little more often near it (it took
		// 0% of the pull's CPU at 19 cycles per GiB).
		parallel := 0
		for _, src := range sources {
			parallel = max(parallel, src.Parallel)
		}
		debug.SetMemoryLimit(ingest.MemoryLimit(runtime.GOMAXPROCS(0), parallel))
	}
	alerter, alertsDone, err := pullAlerter(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer alertsDone()
	s, err := a.open(ctx, pf.store, &storeFlags{keyFile: pf.keyFile}, false)
	if err != nil {
		return err
	}
	defer s.Close()
	var failed []string
	for _, src := range sources {
		p := &ingest.Puller{Store: s, Log: log.Named("pull"), Alerter: alerter}
		var bar *progressbar.ProgressBar
		if tty {
			bar = progressbar.NewOptions64(-1,
				progressbar.OptionSetWriter(a.stderr),
				progressbar.OptionSetDescription(src.Name),
				progressbar.OptionShowBytes(true),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionClearOnFinish(),
				progressbar.OptionSetPredictTime(true),
			)
			p.Progress = barProgress{bar}
		}
		res, err := p.Pull(ctx, src)
		if bar != nil {
			_ = bar.Finish()
		}
		if res != nil {
			a.printPull(res)
		}
		if err != nil {
			if res == nil {
				fmt.Fprintf(a.stdout, "%s: failed: %v\n", displayText(src.Name), err)
			}
			log.Error("pull failed", "source", src.Name, "error", err)
			pullFailedAlert(ctx, alerter, src.Name, res, err, log)
			failed = append(failed, src.Name)
		}
		if ctx.Err() != nil {
			break
		}
	}
	switch {
	case len(failed) > 0:
		return fmt.Errorf("%d of %d sources failed or are incomplete: %s", len(failed), len(sources), strings.Join(failed, ", "))
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return nil
}

func (a *app) printPull(r *ingest.Result) {
	state := "complete"
	if !r.Complete {
		state = fmt.Sprintf("INCOMPLETE (%d errors recorded)", len(r.Errors))
	}
	until := "forever"
	if !r.RetainUntil.IsZero() {
		until = formatTime(r.RetainUntil)
	}
	fmt.Fprintf(a.stdout, "%s: snapshot %s: %d objects, %s (%d fetched, %s; %d unchanged); retain until %s; %s\n",
		displayText(r.Source), r.Snapshot, r.Objects, humanBytes(r.Bytes), r.Fetched, humanBytes(r.FetchedBytes), r.Reused, until, state)
	if mc := r.MassChange; mc != nil {
		fmt.Fprintf(a.stdout, "%s: ALERT mass change: %d of %d objects gone, %d changed since %s; %d earlier snapshots under legal hold\n",
			displayText(r.Source), mc.Gone, mc.Previous, mc.Changed, mc.Baseline, len(r.Held))
	}
	for i, e := range r.Errors {
		if i == 5 {
			fmt.Fprintf(a.stdout, "%s:   ... %d more (store ls %s)\n", displayText(r.Source), len(r.Errors)-i, r.Snapshot)
			break
		}
		fmt.Fprintf(a.stdout, "%s:   error: %s\n", displayText(r.Source), displayText(e))
	}
}
