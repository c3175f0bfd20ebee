package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/spf13/cobra"

	"github.com/holdfast-appliance/holdfast/firmware/receipt"
	"github.com/holdfast-appliance/holdfast/firmware/recoverykey"
	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/restore"
	"github.com/holdfast-appliance/holdfast/services/restore/disk"
	"github.com/holdfast-appliance/holdfast/services/store"
)

type restoreFlags struct {
	storeDir, disk, keyFile, recoveryKey, snapshot, prefix string
	exact                                                  bool
	to, configPath, receiptPub, partSize                   string
	parallel                                               int
}

func (a *app) restoreCmd() *cobra.Command {
	var f restoreFlags
	c := &cobra.Command{
		Use:   "restore (--store DIR | --disk IMG_OR_DEVICE) (--key-file F | --recovery-key K) --snapshot ID [--prefix P [--exact]] (--to DIR | --to s3://BUCKET/PREFIX --config TARGET.hcl)",
		Short: "Restore a snapshot, a prefix of it or one object to a directory or an S3 bucket",
		Long: `restore writes the objects of one snapshot back out: all of them, those whose
key starts with --prefix, or (with --exact) the one object whose key is
--prefix. The store is opened read-only; every chunk is checked as it is
read, and a damaged chunk fails the restore naming its object.

--store DIR names a store directory. --disk names the appliance's data disk
instead (a block device such as /dev/sdb, or an image file of one) when the
appliance is gone: a whole disk, no partition table, ext4 labelled
"holdfast-data", the store in the directory store/ at its root. The disk is
opened strictly read-only (needs root): a read-only loop device over it,
mounted ro without journal replay ("noload") on a private temporary
directory, unmounted and detached again however the restore ends; not one
byte of the disk changes. A disk that is mounted or in use anywhere is
refused, as is one without ext4 or without a store.

The master key comes from --key-file, or from the paper recovery key
(--recovery-key, "-" reads it from stdin) and the wrapped key the store
keeps in STORE/recovery/wrapped-key. With --receipt-pubkey the snapshot's
signed receipt is checked first (a snapshot without one fails).

--to DIR writes below DIR, which must be empty or not exist. A key is
written at the path it names only if it is a clean relative path; any other
key goes to DIR/.holdfast-unsafe-keys/<sha256 of the key>, listed in
DIR/.holdfast-unsafe-keys/index.tsv (name, Go-quoted key, reason).

--to s3://BUCKET/PREFIX writes each object as PREFIX+key, with its content
type and user metadata, to the bucket (which must exist) described by
--config, an HCL file:

  target {
    endpoint   = "s3.example.net:443"   # host:port
    access_key = "..."
    secret_key = "..."
    tls        = true                   # optional, default true
    region     = "us-east-1"            # optional
    ca_bundle  = "/etc/ssl/my-ca.pem"   # optional
  }

An object up to --part-size is read whole (every chunk checked) and sent in
one PUT; a larger one is a multipart upload whose parts go out in parallel
while the store reads on, completed only when every part is in and aborted
otherwise. At most 64 MiB of object data is held at once. Every body is
sent with its SHA-256 in the signed request, so the target refuses bytes
that differ from what the store verified.

Keys deleted at the source (delete markers) are skipped; of a key recorded
more than once the last record is restored.`,
		Example: `  holdfast restore --store /mnt/hf --recovery-key - --snapshot 20260101T000000Z-0011aabb --to /srv/restored
  holdfast restore --disk /dev/sdb --recovery-key - --snapshot 20260101T000000Z-0011aabb \
      --to s3://rescue/ --config target.hcl
  holdfast restore --store /srv/hf --key-file hf.key --snapshot 20260101T000000Z-0011aabb \
      --prefix mail/ --to s3://rescue/mail/ --config target.hcl`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runRestore(cmd, &f)
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.storeDir, "store", "", "the store directory")
	fl.StringVar(&f.disk, "disk", "", "the appliance's data disk (block device or image), opened read-only; needs root")
	fl.StringVar(&f.keyFile, "key-file", "", "file holding the store's master key")
	fl.StringVar(&f.recoveryKey, "recovery-key", "", `the paper recovery key ("-": read it from stdin)`)
	fl.StringVar(&f.snapshot, "snapshot", "", "the snapshot ID (required)")
	fl.StringVar(&f.prefix, "prefix", "", "restore only keys starting with this")
	fl.BoolVar(&f.exact, "exact", false, "restore only the object whose key is --prefix")
	fl.StringVar(&f.to, "to", "", "a directory, or s3://BUCKET/PREFIX (required)")
	fl.StringVar(&f.configPath, "config", "", "HCL file describing the S3 target (with --to s3://...)")
	fl.StringVar(&f.receiptPub, "receipt-pubkey", "", "check the snapshot's receipt against this key (PEM PKIX)")
	fl.IntVar(&f.parallel, "parallel", 0, fmt.Sprintf("objects written at once (default %d to a directory, %d to S3)", restore.DefaultParallel, restore.DefaultS3Parallel))
	fl.StringVar(&f.partSize, "part-size", "16MiB", "S3 multipart part size (at least 5MiB)")
	for _, n := range []string{"snapshot", "to"} {
		_ = c.MarkFlagRequired(n)
	}
	return c
}

func (a *app) runRestore(cmd *cobra.Command, f *restoreFlags) (retErr error) {
	ctx := cmd.Context()
	if (f.storeDir == "") == (f.disk == "") {
		return usageErrorf("give exactly one of --store and --disk")
	}
	if (f.keyFile == "") == (f.recoveryKey == "") {
		return usageErrorf("give exactly one of --key-file and --recovery-key")
	}
	if f.exact && f.prefix == "" {
		return usageErrorf("--exact needs --prefix (the key to restore)")
	}
	if f.parallel < 0 || f.parallel > 64 {
		return usageErrorf("--parallel %d: want 1..64 (or 0 for the default)", f.parallel)
	}
	partSize, err := config.ParseSize(f.partSize)
	if err != nil || partSize < restore.MinPartSize {
		return usageErrorf("--part-size %q: want a size of at least 5MiB", f.partSize)
	}
	var target *restore.Target
	if rest, ok := strings.CutPrefix(f.to, "s3://"); ok {
		bucket, pfx, _ := strings.Cut(rest, "/")
		if bucket == "" {
			return usageErrorf("--to %q: no bucket", f.to)
		}
		if f.configPath == "" {
			return usageErrorf("--to s3://... needs --config TARGET.hcl")
		}
		t, err := loadTarget(f.configPath)
		if err != nil {
			return err
		}
		t.Bucket, t.Prefix = bucket, pfx
		target = t
	} else if f.configPath != "" {
		return usageErrorf("--config is only for --to s3://BUCKET/PREFIX")
	}
	// The recovery key is read and checked before any disk is touched.
	var rk *recoverykey.Key
	if f.recoveryKey != "" {
		text := f.recoveryKey
		if text == "-" {
			line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("read recovery key from stdin: %w", err)
			}
			text = line
		}
		k, err := recoverykey.Parse(text)
		if err != nil {
			return usageErrorf("--recovery-key: %w", err)
		}
		rk = &k
	}
	storeDir, where := f.storeDir, f.storeDir
	if f.disk != "" {
		d, err := disk.Open(ctx, f.disk, disk.Options{Logger: a.log})
		if err != nil {
			return err
		}
		// Deferred first, so it runs after the store is closed.
		defer func() {
			if err := d.Close(); err != nil {
				if retErr == nil {
					retErr = err
				} else {
					retErr = fmt.Errorf("%w; and releasing the disk: %v", retErr, err)
				}
			}
		}()
		storeDir, where = d.StoreDir, disk.StoreDir+"/ on disk "+f.disk
	}
	var ks store.KeySource = store.KeyFile(f.keyFile)
	if rk != nil {
		if _, err := store.ReadRecoveryBlob(storeDir); err != nil {
			return fmt.Errorf("--recovery-key: %s: %w", where, err)
		}
		ks = recoverykey.Opener{Key: *rk, Path: filepath.Join(storeDir, "recovery", "wrapped-key")}
	}
	s, err := store.Open(ctx, storeDir, ks, store.Options{Logger: a.log, ReadOnly: true})
	switch {
	case errors.Is(err, recoverykey.ErrWrongKey):
		return fmt.Errorf("open store %s: the recovery key is well formed but is not this store's: %w", where, err)
	case errors.Is(err, store.ErrWrongKey):
		return fmt.Errorf("open store %s: %w (key file %s)", where, err, f.keyFile)
	case err != nil:
		return fmt.Errorf("open store %s: %w", where, err)
	}
	defer s.Close()
	if f.receiptPub != "" {
		pemBytes, err := os.ReadFile(f.receiptPub)
		if err != nil {
			return fmt.Errorf("read receipt public key: %w", err)
		}
		pub, err := receipt.ParsePublicKeyPEM(pemBytes)
		if err != nil {
			return fmt.Errorf("%s: %w", f.receiptPub, err)
		}
		r, err := restore.VerifyReceipt(s, f.snapshot, pub)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "receipt OK: snapshot %s, manifest sha256 %x\n", r.SnapshotID, r.ManifestDigest)
	}
	// Most of what a restore allocates is chunk buffers that die at once
	// and hold no pointers, which the GC collects almost for free: a
	// lower GOGC keeps peak RSS near the working set (the part buffers)
	// at no measurable CPU cost. GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(restoreGCPercent))
	}
	prog := newRestoreProgress(a.stderr)
	opts := restore.Options{
		Exact: f.exact, Parallel: f.parallel, PartSize: uint64(partSize),
		Logger: a.log, Progress: prog.update,
	}
	var res *restore.Result
	if target != nil {
		res, err = restore.ToS3(ctx, s, f.snapshot, f.prefix, *target, opts)
	} else {
		res, err = restore.ToDir(ctx, s, f.snapshot, f.prefix, f.to, opts)
	}
	prog.finish()
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "restored %d objects (%s) of snapshot %s to %s\n", res.Objects, humanBytes(res.Bytes), f.snapshot, f.to)
	if res.DeleteMarkers > 0 {
		fmt.Fprintf(a.stdout, "skipped %d keys deleted at the source\n", res.DeleteMarkers)
	}
	if res.UnsafeKeys > 0 {
		fmt.Fprintf(a.stdout, "%d keys are not clean paths: see %s\n", res.UnsafeKeys,
			filepath.Join(f.to, restore.UnsafeDir, restore.UnsafeIndex))
	}
	return nil
}

// restoreGCPercent is the GOGC a restore runs with (see runRestore).
const restoreGCPercent = 25

// targetHCL is the schema of --config.
type targetHCL struct {
	Target struct {
		Endpoint  string  `hcl:"endpoint"`
		AccessKey string  `hcl:"access_key"`
		SecretKey string  `hcl:"secret_key"`
		TLS       *bool   `hcl:"tls,optional"`
		Region    *string `hcl:"region,optional"`
		CABundle  *string `hcl:"ca_bundle,optional"`
	} `hcl:"target,block"`
}

// loadTarget reads the S3 target file; a bad file is a usage error.
func loadTarget(path string) (*restore.Target, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, usageErrorf("--config: %w", err)
	}
	file, diags := hclparse.NewParser().ParseHCL(src, path)
	var raw targetHCL
	if !diags.HasErrors() {
		diags = append(diags, gohcl.DecodeBody(file.Body, nil, &raw)...)
	}
	if diags.HasErrors() {
		return nil, usageErrorf("--config: %w", hcl.Diagnostics(diags))
	}
	r := raw.Target
	if r.Endpoint == "" || strings.Contains(r.Endpoint, "://") {
		return nil, usageErrorf("--config %s: endpoint %q: want host:port, no scheme", path, r.Endpoint)
	}
	t := &restore.Target{Endpoint: r.Endpoint, AccessKey: r.AccessKey, SecretKey: config.Secret(r.SecretKey), TLS: true}
	if r.TLS != nil {
		t.TLS = *r.TLS
	}
	if r.Region != nil {
		t.Region = *r.Region
	}
	if r.CABundle != nil {
		p := *r.CABundle
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(path), p)
		}
		pem, err := os.ReadFile(p)
		if err != nil {
			return nil, usageErrorf("--config %s: ca_bundle: %w", path, err)
		}
		t.CABundle, t.CAPEM = p, pem
	}
	return t, nil
}

// restoreProgress prints a progress line to stderr at most once a second.
type restoreProgress struct {
	w    io.Writer
	mu   sync.Mutex
	last time.Time
	p    restore.Progress
	any  bool
}

func newRestoreProgress(w io.Writer) *restoreProgress { return &restoreProgress{w: w} }

func (r *restoreProgress) update(p restore.Progress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.p, r.any = p, true
	if now := time.Now(); now.Sub(r.last) >= time.Second {
		r.last = now
		r.print()
	}
}

func (r *restoreProgress) print() {
	fmt.Fprintf(r.w, "restored %d/%d objects, %s/%s\n", r.p.Objects, r.p.TotalObjects, humanBytes(r.p.Bytes), humanBytes(r.p.TotalBytes))
}

func (r *restoreProgress) finish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.any {
		r.print()
	}
}
