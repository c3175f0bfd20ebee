// Package config reads the appliance's configuration, an HCL file that
// names the appliance and the S3-compatible sources it pulls from, with each
// source's schedule, retention policy, bounds and mass-change policy, and
// where alerts are sent (an SMTP relay, an HTTPS webhook). The schema is
// documented in docs/config.md.
//
// An optional export block turns on the read-only S3 export of the store
// (services/export); without it the appliance listens on no port. Target
// blocks name the S3 buckets a console restore may write to (target.go).
//
// Every value is validated when the file is loaded; an error is an
// hcl.Diagnostics that names the file, the line and the field. Secrets (the
// S3 secret key, the SMTP password, the webhook secret and bearer token) are
// held as Secret, which prints as "REDACTED" in logs and
// %v/%+v/%#v formatting; only Reveal returns the value.
//
// Limits: only the native HCL syntax carries line numbers for fields inside
// blocks (the JSON syntax works but may point at the enclosing block); no
// variables, functions or includes are offered.
package config

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Defaults applied when a field is absent.
const (
	DefaultParallel            = 4
	DefaultRetries             = 5
	DefaultMassChangeThreshold = 0.30
	DefaultMaxObjectSize       = 5 << 40 // 5 TiB, the largest object S3 allows
	// DefaultMaxObjectsPerPull is no bound: a pull keeps no per-entry
	// state (it streams the listing and merges it with sorted snapshots,
	// issue 18), so a bucket of any size is pulled whole in bounded memory.
	// It was 250,000, set to keep a pull within the 96 MiB budget at about
	// 220 bytes of RSS per listed entry. An operator may still set one;
	// without one, a source that lists without end is bounded by the disk
	// (a disk-full alert), as one that sends large objects always was.
	DefaultMaxObjectsPerPull = math.MaxInt64   // listing entries (versions count) per pull: unlimited
	DefaultQuota             = int64(64 << 40) // 64 TiB of object bytes per snapshot
	// MinScheduleInterval is the shortest "every" a schedule accepts.
	MinScheduleInterval = 5 * time.Minute
	// MaxParallel bounds parallel GETs per source.
	MaxParallel = 64
)

// File is a loaded, validated configuration.
type File struct {
	Path      string
	Appliance Appliance
	Sources   []Source
	// Alerts says where alerts go besides the log; nil when the file has
	// no alerts block (see alerts.go and docs/config.md).
	Alerts *Alerts
	// Export is the read-only S3 export; nil (the default) means off (see
	// export.go and docs/config.md).
	Export *Export
	// Targets are the S3 buckets the console's restore command may write
	// to (see target.go and docs/config.md); none by default.
	Targets []Target
}

// Source returns the source called name.
func (f *File) Source(name string) (Source, bool) {
	for _, s := range f.Sources {
		if s.Name == name {
			return s, true
		}
	}
	return Source{}, false
}

// Appliance describes the box itself.
type Appliance struct {
	Name string
	// Scrub is how often every sealed file on every data disk is read and
	// checked (services/mirror.Scrub); DefaultScrubEvery unless set.
	Scrub Schedule
	// ScrubRate bounds the scrub's reads of each data disk, in bytes per
	// second; DefaultScrubRate unless set, 0 for "unlimited" (scrub.go).
	ScrubRate int64
	// ScrubShare is the least a day's scrub slice reads; zero means the
	// store's size / the scrub period in days (scrub.go).
	ScrubShare ScrubShare
	// Maintenance is when the appliance reboots itself into its
	// maintenance window to prune (maintenance.go); DefaultMaintenance
	// unless set.
	Maintenance Maintenance
}

// DefaultScrubEvery is the scrub period when the appliance block sets no
// scrub schedule: a weekly period reads each disk whole once a week, in
// daily slices, which finds a damaged pack while the other disk
// still holds a good copy, at a cost of a few hours of disk reads.
const DefaultScrubEvery = 7 * 24 * time.Hour

// Source is one bucket (or prefix of a bucket) the appliance pulls.
type Source struct {
	Name      string
	S3        S3
	Schedule  Schedule
	Retention Retention
	// Parallel is the number of concurrent GETs.
	Parallel int
	// Retries is how often a failed request (or a body cut mid-transfer) is
	// retried, with exponential backoff, before the object is given up.
	Retries int
	Limits  Limits
	// MassChangeThreshold is the share (0..1] of the previous snapshot's
	// objects that may be gone or changed before a pull raises an alert.
	MassChangeThreshold float64
	// LegalHoldOnMassChange puts a legal hold on the source's previous
	// snapshots when a mass change is detected.
	LegalHoldOnMassChange bool
}

// S3 is how to reach a bucket. The credentials need only read and list
// rights.
type S3 struct {
	Endpoint  string // host:port, no scheme
	Bucket    string
	Prefix    string
	Region    string
	AccessKey string
	SecretKey Secret
	TLS       bool
	// CABundle is the path of a PEM file of CA certificates to trust
	// instead of the system roots; CAPEM is its content, read at load.
	CABundle string
	CAPEM    []byte
	// CheckETagMD5 compares the MD5 of each single-part body with its ETag.
	// Turn it off only for sources whose ETags are not MD5s (e.g. AWS
	// SSE-KMS objects).
	CheckETagMD5 bool
}

// Limits bound what one pull of a source may bring in.
type Limits struct {
	MaxObjectSize     int64 // bytes
	MaxObjectsPerPull int64 // listing entries (each version counts)
	Quota             int64 // bytes of objects one snapshot may hold
}

// Secret is a credential. It never prints its value.
type Secret string

// String returns "REDACTED" (or "" when empty).
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "REDACTED"
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// MarshalText keeps encoders (JSON logs) from printing the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Reveal returns the secret itself.
func (s Secret) Reveal() string { return string(s) }

// Schedule says when a source is pulled.
type Schedule struct {
	Every time.Duration
}

// String gives the schedule back in config syntax.
func (s Schedule) String() string { return "every " + s.Every.String() }

// Retention is a source's retention policy. Zero periods are unset. See
// RetainUntil for how it maps to one retain-until per snapshot.
type Retention struct {
	AllFor, DailyFor, WeeklyFor, MonthlyFor, YearlyFor Period
	// Forever keeps every snapshot with no retain-until (the default when
	// the retention block is absent).
	Forever bool
}

// Period is a calendar period: years, months and days (time.AddDate, UTC)
// plus hours.
type Period struct {
	Years, Months, Days, Hours int
}

// IsZero reports whether p is unset.
func (p Period) IsZero() bool { return p == Period{} }

// AddTo returns t + p.
func (p Period) AddTo(t time.Time) time.Time {
	return t.UTC().AddDate(p.Years, p.Months, p.Days).Add(time.Duration(p.Hours) * time.Hour)
}

// String gives the period back in config syntax.
func (p Period) String() string {
	var b strings.Builder
	for _, f := range []struct {
		n int
		u string
	}{{p.Years, "y"}, {p.Months, "m"}, {p.Days, "d"}, {p.Hours, "h"}} {
		if f.n != 0 {
			fmt.Fprintf(&b, "%d%s", f.n, f.u)
		}
	}
	if b.Len() == 0 {
		return "0"
	}
	return b.String()
}

// --- HCL shapes -------------------------------------------------------------

type fileHCL struct {
	Appliance *applianceHCL `hcl:"appliance,block"`
	Sources   []sourceHCL   `hcl:"source,block"`
	Alerts    *alertsHCL    `hcl:"alerts,block"`
	Export    *exportHCL    `hcl:"export,block"`
	Targets   []targetHCL   `hcl:"target,block"`
}

type applianceHCL struct {
	Name        string   `hcl:"name"`
	Scrub       *string  `hcl:"scrub,optional"`
	ScrubRate   *string  `hcl:"scrub_rate,optional"`
	ScrubShare  *string  `hcl:"scrub_share,optional"`
	Maintenance *string  `hcl:"maintenance,optional"`
	Body        hcl.Body `hcl:",body"`
}

type sourceHCL struct {
	Name                  string        `hcl:"name,label"`
	S3                    *s3HCL        `hcl:"s3,block"`
	Schedule              string        `hcl:"schedule"`
	Retention             *retentionHCL `hcl:"retention,block"`
	Limits                *limitsHCL    `hcl:"limits,block"`
	Parallel              *int          `hcl:"parallel,optional"`
	Retries               *int          `hcl:"retries,optional"`
	MassChangeThreshold   *float64      `hcl:"mass_change_threshold,optional"`
	LegalHoldOnMassChange *bool         `hcl:"legal_hold_on_mass_change,optional"`
	DefRange              hcl.Range     `hcl:",def_range"`
	Body                  hcl.Body      `hcl:",body"`
}

type s3HCL struct {
	Endpoint     string    `hcl:"endpoint"`
	Bucket       string    `hcl:"bucket"`
	Prefix       *string   `hcl:"prefix,optional"`
	Region       *string   `hcl:"region,optional"`
	AccessKey    string    `hcl:"access_key"`
	SecretKey    string    `hcl:"secret_key"`
	TLS          *bool     `hcl:"tls,optional"`
	CABundle     *string   `hcl:"ca_bundle,optional"`
	CheckETagMD5 *bool     `hcl:"check_etag_md5,optional"`
	DefRange     hcl.Range `hcl:",def_range"`
	Body         hcl.Body  `hcl:",body"`
}

type retentionHCL struct {
	AllFor     *string  `hcl:"all_for,optional"`
	DailyFor   *string  `hcl:"daily_for,optional"`
	WeeklyFor  *string  `hcl:"weekly_for,optional"`
	MonthlyFor *string  `hcl:"monthly_for,optional"`
	YearlyFor  *string  `hcl:"yearly_for,optional"`
	Forever    *bool    `hcl:"forever,optional"`
	Body       hcl.Body `hcl:",body"`
}

type limitsHCL struct {
	MaxObjectSize     *string  `hcl:"max_object_size,optional"`
	MaxObjectsPerPull *int64   `hcl:"max_objects_per_pull,optional"`
	Quota             *string  `hcl:"quota,optional"`
	Body              hcl.Body `hcl:",body"`
}

// Load reads and validates the configuration file at path.
func Load(path string) (*File, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, src)
}

// Parse validates src, naming it filename in errors. Relative paths in the
// file (ca_bundle) are taken relative to filename's directory.
func Parse(filename string, src []byte) (*File, error) {
	p := hclparse.NewParser()
	var f *hcl.File
	var diags hcl.Diagnostics
	if strings.HasSuffix(filename, ".json") {
		f, diags = p.ParseJSON(src, filename)
	} else {
		f, diags = p.ParseHCL(src, filename)
	}
	if diags.HasErrors() {
		return nil, diags
	}
	var raw fileHCL
	if diags := gohcl.DecodeBody(f.Body, nil, &raw); diags.HasErrors() {
		nameFields(diags, f.Body)
		return nil, diags
	}
	v := validator{dir: filepath.Dir(filename), file: f}
	out := v.convert(&raw)
	out.Path = filename
	if v.diags.HasErrors() {
		return nil, v.diags
	}
	return out, nil
}

// nameFields adds the field name to diagnostics (type errors from the
// decoder) that point into an attribute without naming it.
func nameFields(diags hcl.Diagnostics, body hcl.Body) {
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		return
	}
	for _, d := range diags {
		if d.Subject == nil {
			continue
		}
		if path := attrAt(sb, *d.Subject, ""); path != "" && !strings.Contains(d.Detail, path) {
			d.Detail = strings.TrimSpace(fmt.Sprintf("field %s: %s", path, d.Detail))
		}
	}
}

// attrAt returns the dotted path (block.block.attr) of the attribute whose
// range holds r.
func attrAt(b *hclsyntax.Body, r hcl.Range, prefix string) string {
	for name, a := range b.Attributes {
		if a.SrcRange.ContainsOffset(r.Start.Byte) {
			return prefix + name
		}
	}
	for _, blk := range b.Blocks {
		if blk.Body != nil && blk.Body.SrcRange.ContainsOffset(r.Start.Byte) {
			p := prefix + blk.Type
			for _, l := range blk.Labels {
				p += fmt.Sprintf("[%q]", l)
			}
			return attrAt(blk.Body, r, p+".")
		}
	}
	return ""
}

// validator collects diagnostics while converting the HCL shapes.
type validator struct {
	dir   string
	file  *hcl.File
	diags hcl.Diagnostics
}

// errf adds an error about attribute name of body (the block's range when
// the attribute is absent).
func (v *validator) errf(body hcl.Body, name, summary, format string, args ...any) {
	v.diags = append(v.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  attrRange(body, name),
	})
}

// attrRange returns the source range of attribute name in body, or the
// body's missing-item range.
func attrRange(body hcl.Body, name string) *hcl.Range {
	if body == nil {
		return nil
	}
	c, _, _ := body.PartialContent(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: name}}})
	if c != nil {
		if a, ok := c.Attributes[name]; ok {
			r := a.Range
			return &r
		}
	}
	r := body.MissingItemRange()
	return &r
}

var sourceNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (v *validator) convert(raw *fileHCL) *File {
	out := &File{}
	if raw.Appliance == nil {
		v.diags = append(v.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: `Missing "appliance" block`,
			Detail:  `The configuration needs an appliance block, e.g. appliance { name = "holdfast-01" }.`,
			Subject: v.file.Body.MissingItemRange().Ptr(),
		})
	} else {
		out.Appliance.Name = raw.Appliance.Name
		if !sourceNameRE.MatchString(raw.Appliance.Name) {
			v.errf(raw.Appliance.Body, "name", `Invalid value for "name"`,
				"appliance name %q: want 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", raw.Appliance.Name)
		}
		out.Appliance.Scrub = Schedule{Every: DefaultScrubEvery}
		if raw.Appliance.Scrub != nil {
			every, err := ParseSchedule(*raw.Appliance.Scrub)
			if err != nil {
				v.errf(raw.Appliance.Body, "scrub", `Invalid value for "scrub"`, "appliance: %v", err)
			}
			out.Appliance.Scrub = Schedule{Every: every}
		}
		out.Appliance.ScrubRate = DefaultScrubRate
		if raw.Appliance.ScrubRate != nil {
			r, err := ParseScrubRate(*raw.Appliance.ScrubRate)
			if err != nil {
				v.errf(raw.Appliance.Body, "scrub_rate", `Invalid value for "scrub_rate"`, "appliance: %v", err)
			}
			out.Appliance.ScrubRate = r
		}
		if raw.Appliance.ScrubShare != nil {
			sh, err := ParseScrubShare(*raw.Appliance.ScrubShare)
			if err != nil {
				v.errf(raw.Appliance.Body, "scrub_share", `Invalid value for "scrub_share"`, "appliance: %v", err)
			}
			out.Appliance.ScrubShare = sh
		}
		out.Appliance.Maintenance = DefaultMaintenance
		if raw.Appliance.Maintenance != nil {
			m, err := ParseMaintenance(*raw.Appliance.Maintenance)
			if err != nil {
				v.errf(raw.Appliance.Body, "maintenance", `Invalid value for "maintenance"`, "appliance: %v", err)
			}
			out.Appliance.Maintenance = m
		}
	}
	if len(raw.Sources) == 0 {
		v.diags = append(v.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: `Missing "source" block`,
			Detail:  `The configuration names no source to pull; add a source "NAME" { s3 { ... } } block.`,
			Subject: v.file.Body.MissingItemRange().Ptr(),
		})
	}
	seen := map[string]hcl.Range{}
	for i := range raw.Sources {
		rs := &raw.Sources[i]
		if prev, dup := seen[rs.Name]; dup {
			v.diags = append(v.diags, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: "Duplicate source",
				Detail:  fmt.Sprintf("source %q is already defined at %s", rs.Name, prev),
				Subject: rs.DefRange.Ptr(),
			})
			continue
		}
		seen[rs.Name] = rs.DefRange
		out.Sources = append(out.Sources, v.source(rs))
	}
	if raw.Alerts != nil {
		out.Alerts = v.alerts(raw.Alerts)
	}
	if raw.Export != nil {
		out.Export = v.export(raw.Export)
	}
	out.Targets = v.targets(raw.Targets)
	return out
}

func (v *validator) source(rs *sourceHCL) Source {
	s := Source{
		Name:                  rs.Name,
		Parallel:              DefaultParallel,
		Retries:               DefaultRetries,
		MassChangeThreshold:   DefaultMassChangeThreshold,
		LegalHoldOnMassChange: true,
		Limits: Limits{
			MaxObjectSize:     DefaultMaxObjectSize,
			MaxObjectsPerPull: DefaultMaxObjectsPerPull,
			Quota:             DefaultQuota,
		},
	}
	if v.checkNamedS3Block("source", rs.Name, rs.DefRange, rs.S3 != nil) {
		s.S3 = v.s3(fmt.Sprintf("source %q", rs.Name), rs.S3)
	}
	every, err := ParseSchedule(rs.Schedule)
	if err != nil {
		v.errf(rs.Body, "schedule", `Invalid value for "schedule"`, "source %q: %v", rs.Name, err)
	}
	s.Schedule = Schedule{Every: every}
	if rs.Retention == nil {
		s.Retention.Forever = true
	} else {
		s.Retention = v.retention(rs.Name, rs.Retention)
	}
	if rs.Limits != nil {
		s.Limits = v.limits(rs.Name, rs.Limits, s.Limits)
	}
	if rs.Parallel != nil {
		s.Parallel = *rs.Parallel
		if s.Parallel < 1 || s.Parallel > MaxParallel {
			v.errf(rs.Body, "parallel", `Invalid value for "parallel"`, "source %q: parallel GETs %d: want 1 to %d", rs.Name, s.Parallel, MaxParallel)
		}
	}
	if rs.Retries != nil {
		s.Retries = *rs.Retries
		if s.Retries < 0 || s.Retries > 100 {
			v.errf(rs.Body, "retries", `Invalid value for "retries"`, "source %q: retries %d: want 0 to 100", rs.Name, s.Retries)
		}
	}
	if rs.MassChangeThreshold != nil {
		s.MassChangeThreshold = *rs.MassChangeThreshold
		if !(s.MassChangeThreshold > 0 && s.MassChangeThreshold <= 1) {
			v.errf(rs.Body, "mass_change_threshold", `Invalid value for "mass_change_threshold"`,
				"source %q: threshold %v: want a share above 0 and at most 1 (e.g. 0.30 for 30%%)", rs.Name, s.MassChangeThreshold)
		}
	}
	if rs.LegalHoldOnMassChange != nil {
		s.LegalHoldOnMassChange = *rs.LegalHoldOnMassChange
	}
	return s
}

var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// s3 checks an s3 block; owner names its block in errors (source "x",
// target "y").
func (v *validator) s3(owner string, r *s3HCL) S3 {
	s := S3{
		Endpoint: r.Endpoint, Bucket: r.Bucket, AccessKey: r.AccessKey, SecretKey: Secret(r.SecretKey),
		TLS: true, CheckETagMD5: true,
	}
	if r.Prefix != nil {
		s.Prefix = *r.Prefix
	}
	if r.Region != nil {
		s.Region = *r.Region
	}
	if r.TLS != nil {
		s.TLS = *r.TLS
	}
	if r.CheckETagMD5 != nil {
		s.CheckETagMD5 = *r.CheckETagMD5
	}
	if err := checkEndpoint(r.Endpoint); err != nil {
		v.errf(r.Body, "endpoint", `Invalid value for "endpoint"`, "%s: %v", owner, err)
	}
	if !bucketRE.MatchString(r.Bucket) || strings.Contains(r.Bucket, "..") || net.ParseIP(r.Bucket) != nil {
		v.errf(r.Body, "bucket", `Invalid value for "bucket"`,
			"%s: bucket %q: want 3 to 63 lowercase letters, digits, '.' or '-', starting and ending with a letter or digit", owner, r.Bucket)
	}
	if len(s.Prefix) > 1024 {
		v.errf(r.Body, "prefix", `Invalid value for "prefix"`, "%s: prefix is %d bytes, S3 keys are at most 1024", owner, len(s.Prefix))
	}
	if strings.TrimSpace(r.AccessKey) == "" {
		v.errf(r.Body, "access_key", `Invalid value for "access_key"`, "%s: access_key is empty", owner)
	}
	if r.SecretKey == "" {
		// Never echo the secret, not even in an error.
		v.errf(r.Body, "secret_key", `Invalid value for "secret_key"`, "%s: secret_key is empty", owner)
	}
	if r.CABundle != nil && *r.CABundle != "" {
		p := *r.CABundle
		if !filepath.IsAbs(p) {
			p = filepath.Join(v.dir, p)
		}
		s.CABundle = p
		pem, err := readCABundle(p)
		switch {
		case err != nil:
			v.errf(r.Body, "ca_bundle", `Invalid value for "ca_bundle"`, "%s: %v", owner, err)
		case !s.TLS:
			v.errf(r.Body, "ca_bundle", `Invalid value for "ca_bundle"`, "%s: a CA bundle needs tls = true", owner)
		case !x509.NewCertPool().AppendCertsFromPEM(pem):
			v.errf(r.Body, "ca_bundle", `Invalid value for "ca_bundle"`, "%s: %s holds no PEM certificate", owner, p)
		default:
			s.CAPEM = bytes.Clone(pem)
		}
	}
	return s
}

// maxCABundle bounds a CA bundle file; system bundles are about 200 KiB.
const maxCABundle = 1 << 20

// readCABundle reads the CA bundle at p, which must be a regular file of at
// most maxCABundle bytes: a device (/dev/zero) or FIFO named by mistake
// must fail the load, not hang it or exhaust memory.
func readCABundle(p string) ([]byte, error) {
	// Stat before opening: opening a FIFO blocks until it has a writer.
	if fi, err := os.Stat(p); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCABundle+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxCABundle {
		return nil, fmt.Errorf("%s is larger than %d bytes", p, maxCABundle)
	}
	return b, nil
}

// checkEndpoint accepts host or host:port, with no scheme or path.
func checkEndpoint(ep string) error {
	if ep == "" {
		return fmt.Errorf("endpoint is empty; want host:port, e.g. s3.example.internal:9000")
	}
	if strings.Contains(ep, "://") {
		return fmt.Errorf("endpoint %q: give host:port without a scheme (tls = true/false selects https/http)", ep)
	}
	if strings.ContainsAny(ep, "/?#@ \t\r\n") {
		return fmt.Errorf("endpoint %q: want host:port, without path, query, user or spaces", ep)
	}
	host, port := ep, ""
	if h, p, err := net.SplitHostPort(ep); err == nil {
		host, port = h, p
	} else if strings.Count(ep, ":") == 1 {
		return fmt.Errorf("endpoint %q: %v", ep, err)
	}
	if host == "" {
		return fmt.Errorf("endpoint %q: host is empty", ep)
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("endpoint %q: port %q: want 1 to 65535", ep, port)
		}
	}
	return nil
}

func (v *validator) retention(name string, r *retentionHCL) Retention {
	var out Retention
	fields := []struct {
		attr string
		in   *string
		out  *Period
	}{
		{"all_for", r.AllFor, &out.AllFor},
		{"daily_for", r.DailyFor, &out.DailyFor},
		{"weekly_for", r.WeeklyFor, &out.WeeklyFor},
		{"monthly_for", r.MonthlyFor, &out.MonthlyFor},
		{"yearly_for", r.YearlyFor, &out.YearlyFor},
	}
	set := false
	for _, f := range fields {
		if f.in == nil {
			continue
		}
		p, err := ParsePeriod(*f.in)
		if errors.Is(err, ErrZeroPeriod) {
			v.errf(r.Body, f.attr, fmt.Sprintf("Invalid value for %q", f.attr), "source %q: %v; to keep snapshots forever write forever = true", name, err)
			continue
		}
		if err != nil {
			v.errf(r.Body, f.attr, fmt.Sprintf("Invalid value for %q", f.attr), "source %q: %v", name, err)
			continue
		}
		*f.out = p
		set = true
	}
	if r.Forever != nil && *r.Forever {
		out.Forever = true
		if set {
			v.errf(r.Body, "forever", `Invalid value for "forever"`, "source %q: forever = true keeps every snapshot; remove the *_for periods or forever", name)
		}
		return out
	}
	if !set {
		v.errf(r.Body, "all_for", `Missing retention period`,
			"source %q: the retention block sets no period; give all_for (and optionally daily_for, weekly_for, monthly_for, yearly_for), or forever = true", name)
	}
	return out
}

func (v *validator) limits(name string, r *limitsHCL, def Limits) Limits {
	out := def
	v.positiveSize(r.Body, name, "max_object_size", r.MaxObjectSize, &out.MaxObjectSize)
	if r.MaxObjectsPerPull != nil {
		if *r.MaxObjectsPerPull < 1 {
			v.errf(r.Body, "max_objects_per_pull", `Invalid value for "max_objects_per_pull"`, "source %q: %d: want at least 1", name, *r.MaxObjectsPerPull)
		} else {
			out.MaxObjectsPerPull = *r.MaxObjectsPerPull
		}
	}
	v.positiveSize(r.Body, name, "quota", r.Quota, &out.Quota)
	return out
}

// positiveSize parses the size attribute attr of source name into *dst when
// it is set, reporting a malformed or non-positive value.
func (v *validator) positiveSize(body hcl.Body, name, attr string, in *string, dst *int64) {
	if in == nil {
		return
	}
	n, err := ParseSize(*in)
	if err == nil && n <= 0 {
		err = fmt.Errorf("size %q: must be positive", *in)
	}
	if err != nil {
		v.errf(body, attr, fmt.Sprintf("Invalid value for %q", attr), "source %q: %v", name, err)
		return
	}
	*dst = n
}

// ParseSchedule parses "every <duration>", where the duration is one or more
// <number><unit> terms with units d (24h), h, m (minutes) and s, e.g.
// "every 6h", "every 1d", "every 90m". It returns the interval.
func ParseSchedule(s string) (time.Duration, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), "every ")
	if !ok {
		return 0, fmt.Errorf("schedule %q: want \"every <interval>\", e.g. \"every 6h\"", s)
	}
	rest = strings.TrimSpace(rest)
	var total time.Duration
	if days, after, found := strings.Cut(rest, "d"); found {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 366 {
			return 0, fmt.Errorf("schedule %q: days %q: want 0 to 366", s, days)
		}
		total = time.Duration(n) * 24 * time.Hour
		rest = after
	}
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil {
			return 0, fmt.Errorf("schedule %q: interval: want terms such as 1d, 6h, 30m: %v", s, err)
		}
		total += d
	}
	if total < MinScheduleInterval {
		return 0, fmt.Errorf("schedule %q: interval %s is shorter than the minimum %s", s, total, MinScheduleInterval)
	}
	if total > 366*24*time.Hour {
		return 0, fmt.Errorf("schedule %q: interval %s is longer than a year", s, total)
	}
	return total, nil
}

// maxPeriodNumber bounds each number in a period so arithmetic cannot
// overflow; it is far beyond any real retention.
const maxPeriodNumber = 100_000

// ErrZeroPeriod marks a period that adds up to nothing.
var ErrZeroPeriod = errors.New("a period must be longer than zero")

// ParsePeriod parses a retention period: one or more <number><unit> terms
// with units y (years), m (months, never minutes), w (weeks), d (days) and
// h (hours), e.g. "14d", "90d", "2y", "1y6m". Each unit appears at most once;
// the period must be positive.
func ParsePeriod(s string) (Period, error) {
	var p Period
	in := s
	if in == "" {
		return p, fmt.Errorf("period is empty; want e.g. 14d, 90d or 2y")
	}
	seen := map[byte]bool{}
	for len(in) > 0 {
		i := 0
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
		}
		if i == 0 || i == len(in) {
			return Period{}, fmt.Errorf("period %q: want <number><unit> terms with units y, m (months), w, d, h, e.g. 14d or 1y6m", s)
		}
		n, err := strconv.Atoi(in[:i])
		if err != nil || n > maxPeriodNumber {
			return Period{}, fmt.Errorf("period %q: number %q is too large", s, in[:i])
		}
		u := in[i]
		if seen[u] {
			return Period{}, fmt.Errorf("period %q: unit %q given twice", s, u)
		}
		seen[u] = true
		switch u {
		case 'y':
			p.Years = n
		case 'm':
			p.Months = n
		case 'w':
			p.Days += 7 * n
		case 'd':
			p.Days += n
		case 'h':
			p.Hours = n
		default:
			return Period{}, fmt.Errorf("period %q: unknown unit %q (want y, m, w, d or h)", s, u)
		}
		in = in[i+1:]
	}
	if p.IsZero() {
		return Period{}, fmt.Errorf("period %q is zero: %w", s, ErrZeroPeriod)
	}
	return p, nil
}

// ParseSize parses a byte count: a plain number, or a number with a unit
// B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" {
		return 0, fmt.Errorf("size %q: want a number of bytes, optionally with a unit (KiB, MiB, GiB, TiB, KB, MB, GB, TB)", s)
	}
	mult := map[string]float64{
		"": 1, "B": 1,
		"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
	}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("size %q: unknown unit %q (want B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)", s, unit)
	}
	v := f * mult
	if v >= math.MaxInt64/2 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	if v != math.Trunc(v) {
		return 0, fmt.Errorf("size %q is not a whole number of bytes", s)
	}
	return int64(v), nil
}
