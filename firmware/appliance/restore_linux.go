package appliance

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast-appliance/holdfast/firmware/control"
	"github.com/holdfast-appliance/holdfast/firmware/receipt"
	"github.com/holdfast-appliance/holdfast/firmware/tpm"
	"github.com/holdfast-appliance/holdfast/services/store"
)

// Restore to S3 from the console:
//
//	restore SNAPSHOT TARGET [PREFIX]       every object, or those under PREFIX
//	restore SNAPSHOT TARGET --object KEY   one object
//
// TARGET is a target block of the sealed config. A PREFIX or KEY that
// starts with a double quote is a Go-quoted string, the form ls prints keys
// in (so "a b\n" or "\xff" can be given); anything else is taken as it is.
// A typed line is split on white space, so the words of a quoted key are
// joined with one space: write \t, \n or \x20 inside the quotes for other
// white space. `holdfast console restore` always sends the key quoted.
//
// PID 1 never touches the network: it reads the receipt key from the TPM,
// checks the snapshot's receipt itself (checkReceipt: signed by that key,
// naming the snapshot, signing the digest of the sealed manifest, which
// PID 1 computes) and only then sends the worker one "restore" request
// (the worker's side: firmware/worker restore_linux.go); the worker (uid 1000, no
// capabilities) opens a read-only store handle, verifies the snapshot's
// signed receipt against that key and the manifest, and runs restore.ToS3
// (every chunk checked; see services/restore) in the goroutine the control
// channel gave the request. The handle is read-only and the worker's
// writer lock is not taken, so scheduled pulls go on meanwhile. While the
// request runs PID 1 asks the worker once a second how far it got
// ("restore-progress") and prints a line when that changed, then a
// summary:
//
//	restore: snapshot 2026…-0011aabb, all objects, to target "offsite" (s3.example.net:443 bucket "rescue" prefix ""); receipt checked by PID 1 (manifest sha256 6f1c…)
//	restore: receipt OK (manifest sha256 6f1c…); 352 objects, 130.0 MiB to write
//	restore: 120/352 objects, 45.1/130.0 MiB
//	restore: done: 352 objects, 130.0 MiB of snapshot 2026…-0011aabb (source "mail") to target "offsite" in 41s; skipped 2 key(s) deleted at the source; receipt verified (manifest sha256 6f1c…)
//
// Limits: one restore at a time (the worker refuses a second); the console
// answers one command at a time, so it waits for the restore to end, and
// a restore cannot be stopped from the console. Each progress line is
// flushed as its own OUTPUT frame, so `holdfast console restore` shows it
// as it happens. Objects written before a failure stay in the bucket.

// restoreUsage is the error for a malformed restore command.
const restoreUsage = `usage: restore SNAPSHOT TARGET [PREFIX] | restore SNAPSHOT TARGET --object KEY (a PREFIX or KEY starting with " is Go-quoted, as ls prints keys)`

// restoreArgs is a parsed restore command.
type restoreArgs struct {
	snapshot, target string
	prefix           string // with exact: the key
	exact            bool
}

// parseRestoreArgs reads the arguments of the restore command.
func parseRestoreArgs(args []string) (restoreArgs, error) {
	if len(args) < 2 {
		return restoreArgs{}, errors.New(restoreUsage)
	}
	r := restoreArgs{snapshot: args[0], target: args[1]}
	rest := args[2:]
	if len(rest) > 0 && rest[0] == "--object" {
		r.exact, rest = true, rest[1:]
		if len(rest) == 0 {
			return restoreArgs{}, fmt.Errorf("--object needs a KEY; %s", restoreUsage)
		}
	} else if len(rest) > 0 && strings.HasPrefix(rest[0], "--") {
		return restoreArgs{}, fmt.Errorf("unknown option %q (to restore a prefix that starts with --, quote it); %s", rest[0], restoreUsage)
	}
	if len(rest) == 0 {
		return r, nil
	}
	k, err := keyArg(rest)
	if err != nil {
		return restoreArgs{}, err
	}
	if r.exact && k == "" {
		return restoreArgs{}, errors.New("--object needs a non-empty KEY")
	}
	r.prefix = k
	return r, nil
}

// keyArg reads a PREFIX or KEY: Go-quoted when it starts with a double
// quote (the words of a typed line joined with one space), else literal.
func keyArg(words []string) (string, error) {
	if !strings.HasPrefix(words[0], `"`) {
		if len(words) > 1 {
			return "", fmt.Errorf("%d words after TARGET: put a PREFIX or KEY with spaces in double quotes, e.g. \"my key\" (Go syntax, as ls prints keys)", len(words))
		}
		return words[0], nil
	}
	q := strings.Join(words, " ")
	k, err := strconv.Unquote(q)
	if err != nil {
		return "", fmt.Errorf("%s is not a Go-quoted string (escape \" and \\ inside it with a backslash): %w", strconv.Quote(q), err)
	}
	return k, nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f", float64(n)/(1<<20)) }

// progressLine is the console line for a running restore.
func progressLine(r restoreReport) string {
	return fmt.Sprintf("restore: %d/%d objects, %s/%s MiB", r.Objects, r.TotalObjects, mib(r.Bytes), mib(r.TotalBytes))
}

// --- PID 1 -------------------------------------------------------------------

// restore is the console's restore command.
func (a *appliance) restore(ctx context.Context, args []string, out io.Writer) error {
	ra, err := parseRestoreArgs(args)
	if err != nil {
		return err
	}
	a.mu.Lock()
	cfg, w, t := a.cfg, a.worker, a.tpm
	dirs := []string{a.storeDir}
	for _, d := range a.stores {
		if d.Dir != a.storeDir {
			dirs = append(dirs, d.Dir)
		}
	}
	a.mu.Unlock()
	if cfg == nil || w == nil {
		return errors.New("restore needs a config and a running worker")
	}
	tg, err := cfg.TargetNamed(ra.target)
	if err != nil {
		return err
	}
	if t == nil {
		return errors.New("no TPM: the snapshot's receipt cannot be checked, so nothing is restored")
	}
	pub, err := (&tpm.Signer{TPM: t}).PublicKeyPEM(ctx)
	if err != nil {
		return fmt.Errorf("receipt key from the TPM: %w", err)
	}
	// PID 1 checks the receipt itself before it asks the worker for
	// anything (the worker checks it again, against the manifest it
	// reads): a worker that lied about a snapshot cannot get one restored.
	// Every data disk holds the same store: the first whose sealed copy
	// proves the receipt will do (the primary may have failed this boot;
	// the worker restores from the disk it uses and checks again there).
	var digest [32]byte
	for i, dir := range dirs {
		d, cerr := checkReceipt(ctx, dir, ra.snapshot, pub)
		if cerr == nil {
			digest, err = d, nil
			break
		}
		if i == 0 {
			err = cerr
		}
	}
	if err != nil {
		a.log.Error("restore refused: receipt check failed", "snapshot", ra.snapshot, "error", err)
		return fmt.Errorf("restore refused, nothing was written: %w", err)
	}
	what := "all objects"
	switch {
	case ra.exact:
		what = "object " + strconv.Quote(ra.prefix)
	case ra.prefix != "":
		what = "objects under " + strconv.Quote(ra.prefix)
	}
	fmt.Fprintf(out, "restore: snapshot %s, %s, to target %q (%s bucket %q prefix %q); receipt checked by PID 1 (manifest sha256 %x)\r\n",
		ra.snapshot, what, tg.Name, tg.S3.Endpoint, tg.S3.Bucket, tg.S3.Prefix, digest)
	a.log.Info("restore started at the console", "snapshot", ra.snapshot, "target", tg.Name, "what", what)
	err = followRestore(ctx, w, &control.RestoreRequest{Snapshot: ra.snapshot, Target: ra.target,
		Prefix: []byte(ra.prefix), Exact: ra.exact, ReceiptKey: pub}, out, time.Second)
	if err != nil {
		a.log.Error("restore failed", "snapshot", ra.snapshot, "target", tg.Name, "error", err)
	}
	return err
}

// checkReceipt is PID 1's own check of snapshot id's receipt in the store
// at dir: signed by the TPM's receipt key (pubPEM), naming id, and signing
// the SHA-256 of the sealed manifest, which PID 1 computes itself. It
// returns that digest.
func checkReceipt(ctx context.Context, dir, id string, pubPEM []byte) ([32]byte, error) {
	if dir == "" {
		return [32]byte{}, errors.New("no store")
	}
	pub, err := receipt.ParsePublicKeyPEM(pubPEM)
	if err != nil {
		return [32]byte{}, fmt.Errorf("receipt key: %w", err)
	}
	raw, err := store.ReadReceiptAt(dir, id)
	if err != nil {
		return [32]byte{}, fmt.Errorf("receipt of snapshot %s: %w", id, err)
	}
	d, err := store.SealedManifestDigest(ctx, dir, id)
	if err != nil {
		return [32]byte{}, fmt.Errorf("snapshot %s: %w", id, err)
	}
	if _, err := receipt.VerifyFor(raw, pub, id, d); err != nil {
		return [32]byte{}, err
	}
	return d, nil
}

// followRestore sends the restore request req to the worker and, until it
// answers, asks every `every` how far it got, writing a line to out when
// that changed; then it writes the summary.
func followRestore(ctx context.Context, w *control.Conn, req *control.RestoreRequest, out io.Writer, every time.Duration) error {
	start := time.Now()
	type answer struct {
		r   *restoreReport
		err error
	}
	done := make(chan answer, 1)
	go func() {
		m, err := control.Do[*control.RestoreReply](ctx, w, req)
		var r *restoreReport
		if m != nil {
			r = m.Restore
		}
		done <- answer{r, err}
	}()
	tick := time.NewTicker(every)
	defer tick.Stop()
	var last restoreReport
	for {
		select {
		case a := <-done:
			return restoreSummary(req, a.r, a.err, last, time.Since(start), out)
		case <-tick.C:
			r, err := control.Do[*control.RestoreReply](ctx, w, &control.RestoreProgressRequest{})
			if err != nil || r == nil || r.Restore == nil || r.Restore.Snapshot != req.Snapshot || r.Restore.Target != req.Target {
				continue // not started yet, or just ended
			}
			p := *r.Restore
			if p.Receipt != "" && last.Receipt == "" {
				fmt.Fprintf(out, "restore: receipt OK (manifest sha256 %s); %d objects, %s MiB to write\r\n", hexOrQuoted(p.Receipt), p.TotalObjects, mib(p.TotalBytes))
			}
			if p.Receipt != "" && (p.Objects != last.Objects || p.Bytes != last.Bytes || last.Receipt == "") {
				fmt.Fprintf(out, "%s\r\n", progressLine(p))
				flush(out)
			}
			last = p
		}
	}
}

// hexOrQuoted returns a digest the worker reported as it is when it is
// hex, else Go-quoted: what the worker says is data, and must not be able
// to drive the operator's terminal.
func hexOrQuoted(s string) string {
	if _, err := hex.DecodeString(s); err == nil {
		return s
	}
	return strconv.Quote(s)
}

// restoreSummary writes the last line of the restore req and returns its
// error.
func restoreSummary(req *control.RestoreRequest, r *restoreReport, err error, last restoreReport, took time.Duration, out io.Writer) error {
	if err != nil {
		if r != nil && r.Objects > 0 {
			fmt.Fprintf(out, "restore: stopped after %d/%d objects, %s/%s MiB; the objects written stay in the bucket\r\n",
				r.Objects, r.TotalObjects, mib(r.Bytes), mib(r.TotalBytes))
		}
		return err
	}
	if r == nil {
		return errors.New("restore: the worker sent no result")
	}
	if last.Receipt == "" || last.Objects != r.Objects {
		fmt.Fprintf(out, "%s\r\n", progressLine(*r))
	}
	fmt.Fprintf(out, "restore: done: %d objects, %s MiB of snapshot %s (source %q) to target %q in %s; skipped %d key(s) deleted at the source; receipt verified (manifest sha256 %s)\r\n",
		r.Objects, mib(r.Bytes), req.Snapshot, r.Source, req.Target, took.Round(time.Second), r.DeleteMarkers, hexOrQuoted(r.Receipt))
	return nil
}

// flush sends buffered console output now when out can (the console's
// OUTPUT writer buffers a frame's worth otherwise).
func flush(out io.Writer) {
	if f, ok := out.(interface{ Flush() error }); ok {
		_ = f.Flush()
	}
}
