package control

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"
)

// Op names an operation.
type Op string

// The operations; see the table in the package doc.
const (
	OpInit            Op = "init"
	OpPull            Op = "pull"
	OpExtend          Op = "extend"
	OpScrub           Op = "scrub"
	OpRestore         Op = "restore"
	OpRestoreProgress Op = "restore-progress"
	OpQuiesce         Op = "quiesce"
	OpSendAlert       Op = "send-alert"
	OpSign            Op = "sign"
	OpStatus          Op = "status"
	OpAlert           Op = "alert"
	OpPrimary         Op = "primary"
	OpMirror          Op = "mirror"
	OpScrubProgress   Op = "scrub-progress"
)

// Side is one end of the channel.
type Side string

// The two ends.
const (
	PID1   Side = "pid1"
	Worker Side = "worker"
)

// Bounds of every field. A message over them is refused on decode.
const (
	MaxLine       = 1 << 20   // one framed message, newline included
	MaxName       = 128       // a source, target or disk name, a serial
	MaxText       = 4096      // free text: alerts, summaries, reasons, errors
	MaxSnapshotID = 64        // a snapshot ID (services/store: 33 bytes)
	MaxPath       = 1024      // init's store directories
	MaxKey        = 64        // each key init carries
	MaxConfig     = 256 << 10 // the config (firmware/console.MaxConfigSize)
	MaxRecovery   = 4096      // the wrapped recovery key
	MaxDisks      = 8         // data disks in init
	MaxPrefix     = 1024      // an S3 key or prefix (S3's own limit)
	MaxReceiptKey = 4096      // a PEM public key
	MaxReceipt    = 64 << 10  // a receipt (services/store's record bound)
)

// Request is the body of a request of one operation.
type Request interface {
	Op() Op
	Validate() error
}

// Reply is the body of a reply.
type Reply interface {
	Validate() error
}

// OpSpec describes one registered operation.
type OpSpec struct {
	Op   Op
	From Side // who may send it
	// Notice: sent without an id and never answered.
	Notice bool
	// Request and Reply are the body types (pointers to structs); Reply
	// is nil for a notice.
	Request, Reply reflect.Type
}

// Ops is the protocol table: every operation, in the order of the table
// in the package doc.
func Ops() []OpSpec {
	t := func(v any) reflect.Type { return reflect.TypeOf(v) }
	return []OpSpec{
		{OpInit, PID1, false, t(&InitRequest{}), t(&Empty{})},
		{OpPull, PID1, false, t(&PullRequest{}), t(&PullReply{})},
		{OpExtend, PID1, false, t(&ExtendRequest{}), t(&Empty{})},
		{OpScrub, PID1, false, t(&ScrubRequest{}), t(&ScrubReply{})},
		{OpRestore, PID1, false, t(&RestoreRequest{}), t(&RestoreReply{})},
		{OpRestoreProgress, PID1, false, t(&RestoreProgressRequest{}), t(&RestoreReply{})},
		{OpQuiesce, PID1, false, t(&QuiesceRequest{}), t(&QuiesceReply{})},
		{OpSendAlert, PID1, true, t(&SendAlert{}), nil},
		{OpSign, Worker, false, t(&SignRequest{}), t(&SignReply{})},
		{OpStatus, Worker, true, t(&StatusNotice{}), nil},
		{OpAlert, Worker, true, t(&AlertNotice{}), nil},
		{OpPrimary, Worker, true, t(&PrimaryNotice{}), nil},
		{OpMirror, Worker, true, t(&MirrorNotice{}), nil},
		{OpScrubProgress, Worker, true, t(&ScrubProgressNotice{}), nil},
	}
}

// spec returns the spec of op.
func spec(op Op) (OpSpec, bool) {
	for _, s := range Ops() {
		if s.Op == op {
			return s, true
		}
	}
	return OpSpec{}, false
}

// Empty is the reply of an operation that returns nothing but success.
type Empty struct{}

// Validate accepts it.
func (*Empty) Validate() error { return nil }

// Disk names a data disk holding the store, for the worker.
type Disk struct {
	Name   string `json:"name"`
	Serial string `json:"serial"`
	Dir    string `json:"dir"`
}

func (d Disk) validate() error {
	return errors.Join(checkName("disk name", d.Name, false), checkName("disk serial", d.Serial, true), checkPath("disk dir", d.Dir))
}

// InitRequest starts the worker: its keys, its config and its disks.
type InitRequest struct {
	// Keys are the subkeys of the store on the data disks; never the
	// master key, which does not leave PID 1 (docs/keys.md).
	Keys   StoreKeys `json:"keys"`
	Config []byte    `json:"config"`
	// StoreDir is the store on the primary disk; Disks every data disk
	// holding the store, the primary first.
	StoreDir string `json:"store_dir"`
	Disks    []Disk `json:"disks"`
	// TrustedTime is T at lockdown: new snapshots' retention counts from
	// no earlier than it.
	TrustedTime time.Time `json:"trusted_time,omitzero"`
	// Create: the disk was just formatted; the worker creates the store
	// with Recovery, the wrapped recovery key.
	Create   bool   `json:"create,omitempty"`
	Recovery []byte `json:"recovery,omitempty"`
}

// Op is init.
func (*InitRequest) Op() Op { return OpInit }

// Validate checks the bounds.
func (r *InitRequest) Validate() error {
	errs := []error{r.Keys.validate(), checkBytes("config", r.Config, 1, MaxConfig),
		checkPath("store_dir", r.StoreDir), checkBytes("recovery", r.Recovery, 0, MaxRecovery)}
	if len(r.Disks) == 0 || len(r.Disks) > MaxDisks {
		errs = append(errs, fmt.Errorf("disks: %d, want 1..%d", len(r.Disks), MaxDisks))
	}
	for _, d := range r.Disks {
		errs = append(errs, d.validate())
	}
	return errors.Join(errs...)
}

// StoreKeys are one store's subkeys as services/store.StoreKeys holds
// them (its ID and the keys derived from the master key for it).
type StoreKeys struct {
	ID      [16]byte `json:"id"`
	ChunkID []byte   `json:"chunk_id"`
	Data    []byte   `json:"data"`
	Meta    []byte   `json:"meta"`
	Clock   []byte   `json:"clock,omitempty"`
}

func (k *StoreKeys) validate() error {
	clock := checkBytes("keys clock", k.Clock, 32, 32)
	if len(k.Clock) == 0 {
		clock = nil // the read-only part: no clock key at all
	}
	return errors.Join(checkBytes("keys chunk_id", k.ChunkID, 32, 32), checkBytes("keys data", k.Data, 32, 32),
		checkBytes("keys meta", k.Meta, 32, 32), clock)
}

// PullRequest asks for a pull of one configured source now.
type PullRequest struct {
	Source string `json:"source"`
}

// Op is pull.
func (*PullRequest) Op() Op { return OpPull }

// Validate checks the bounds.
func (r *PullRequest) Validate() error { return checkName("source", r.Source, false) }

// PullStatus is how a pull went.
type PullStatus struct {
	Last     time.Time     `json:"last,omitzero"`
	Took     time.Duration `json:"took,omitempty"`
	Snapshot string        `json:"snapshot,omitempty"`
	Summary  string        `json:"summary,omitempty"`
	// Err is why it failed; "" when it worked.
	Err  string    `json:"err,omitempty"`
	Next time.Time `json:"next,omitzero"`
}

func (s *PullStatus) validate() error {
	if s == nil {
		return nil
	}
	var errs []error
	if s.Took < 0 {
		errs = append(errs, errors.New("status took is negative"))
	}
	if s.Snapshot != "" {
		errs = append(errs, checkSnapshot(s.Snapshot))
	}
	return errors.Join(append(errs, checkText("status summary", s.Summary), checkText("status err", s.Err))...)
}

// PullReply is the status of the pull (nil when the source is unknown).
type PullReply struct {
	Status *PullStatus `json:"status,omitempty"`
}

// Validate checks the bounds.
func (r *PullReply) Validate() error { return r.Status.validate() }

// ExtendRequest extends a snapshot's retention to Until, or puts it under
// legal hold.
type ExtendRequest struct {
	Snapshot string    `json:"snapshot"`
	Until    time.Time `json:"until,omitzero"`
	Hold     bool      `json:"hold,omitempty"`
	Reason   string    `json:"reason"`
}

// Op is extend.
func (*ExtendRequest) Op() Op { return OpExtend }

// Validate checks the bounds.
func (r *ExtendRequest) Validate() error {
	var err error
	if r.Hold == !r.Until.IsZero() {
		err = errors.New("extend: either until or hold")
	}
	return errors.Join(err, checkSnapshot(r.Snapshot), checkText("reason", r.Reason))
}

// ScrubRequest asks for a scrub of every disk now.
type ScrubRequest struct{}

// Op is scrub.
func (*ScrubRequest) Op() Op { return OpScrub }

// Validate accepts it.
func (*ScrubRequest) Validate() error { return nil }

// ScrubReply summarises a scrub for the console.
type ScrubReply struct {
	Summary string `json:"summary"`
}

// Validate checks the bounds.
func (r *ScrubReply) Validate() error { return checkText("summary", r.Summary) }

// RestoreRequest restores a snapshot (or the objects under a prefix, or
// one object when Exact) to a target of the config, after checking its
// receipt against ReceiptKey (PEM PKIX, the TPM's receipt key). Prefix is
// bytes: JSON would mangle a key that is not UTF-8.
type RestoreRequest struct {
	Snapshot   string `json:"snapshot"`
	Target     string `json:"target"`
	Prefix     []byte `json:"prefix,omitempty"`
	Exact      bool   `json:"exact,omitempty"`
	ReceiptKey []byte `json:"receipt_key"`
}

// Op is restore.
func (*RestoreRequest) Op() Op { return OpRestore }

// Validate checks the bounds.
func (r *RestoreRequest) Validate() error {
	return errors.Join(checkSnapshot(r.Snapshot), checkName("target", r.Target, false),
		checkBytes("prefix", r.Prefix, 0, MaxPrefix), checkBytes("receipt_key", r.ReceiptKey, 1, MaxReceiptKey))
}

// RestoreProgressRequest asks how far the running restore got.
type RestoreProgressRequest struct{}

// Op is restore-progress.
func (*RestoreProgressRequest) Op() Op { return OpRestoreProgress }

// Validate accepts it.
func (*RestoreProgressRequest) Validate() error { return nil }

// RestoreReport is how far a restore got.
type RestoreReport struct {
	Snapshot string `json:"snapshot"`
	Target   string `json:"target"`
	Source   string `json:"source,omitempty"` // the snapshot's source
	// Receipt is the hex SHA-256 of the manifest the verified receipt
	// signs; "" until the receipt is verified.
	Receipt       string `json:"receipt,omitempty"`
	Objects       int    `json:"objects"`
	TotalObjects  int    `json:"total_objects"`
	Bytes         int64  `json:"bytes"`
	TotalBytes    int64  `json:"total_bytes"`
	DeleteMarkers int    `json:"delete_markers,omitempty"` // keys skipped: deleted at the source
}

func (r *RestoreReport) validate() error {
	if r == nil {
		return nil
	}
	var errs []error
	if r.Objects < 0 || r.TotalObjects < 0 || r.Bytes < 0 || r.TotalBytes < 0 || r.DeleteMarkers < 0 {
		errs = append(errs, errors.New("restore report: negative count"))
	}
	if len(r.Receipt) > 64 {
		errs = append(errs, errors.New("restore report: receipt digest over 64 characters"))
	}
	return errors.Join(append(errs, checkSnapshot(r.Snapshot), checkName("target", r.Target, false), checkName("source", r.Source, true))...)
}

// RestoreReply is how far the restore got (may be nil with an error).
type RestoreReply struct {
	Restore *RestoreReport `json:"restore,omitempty"`
}

// Validate checks the bounds.
func (r *RestoreReply) Validate() error { return r.Restore.validate() }

// QuiesceRequest asks the worker to start nothing new.
type QuiesceRequest struct{}

// Op is quiesce.
func (*QuiesceRequest) Op() Op { return OpQuiesce }

// Validate accepts it.
func (*QuiesceRequest) Validate() error { return nil }

// QuiesceReply says what still runs; "" when the worker was idle and now
// starts nothing new.
type QuiesceReply struct {
	Busy string `json:"busy,omitempty"`
}

// Validate checks the bounds.
func (r *QuiesceReply) Validate() error { return checkText("busy", r.Busy) }

// SendAlert is one of PID 1's alerts, for the worker to send by mail and
// webhook (PID 1 has no network).
type SendAlert struct {
	Kind string `json:"kind"`
	Text string `json:"text"`
}

// Op is send-alert.
func (*SendAlert) Op() Op { return OpSendAlert }

// Validate checks the bounds.
func (r *SendAlert) Validate() error {
	return errors.Join(checkName("kind", r.Kind, false), checkText("text", r.Text))
}

// SignRequest asks PID 1 for a receipt of a committed snapshot. It names
// the snapshot only: PID 1 digests the sealed manifest itself.
type SignRequest struct {
	Snapshot string `json:"snapshot"`
}

// Op is sign.
func (*SignRequest) Op() Op { return OpSign }

// Validate checks the bounds.
func (r *SignRequest) Validate() error { return checkSnapshot(r.Snapshot) }

// SignReply is the receipt.
type SignReply struct {
	Receipt []byte `json:"receipt"`
}

// Validate checks the bounds.
func (r *SignReply) Validate() error { return checkBytes("receipt", r.Receipt, 1, MaxReceipt) }

// StatusNotice is how a scheduled pull of a source went.
type StatusNotice struct {
	Source string      `json:"source"`
	Status *PullStatus `json:"status"`
}

// Op is status.
func (*StatusNotice) Op() Op { return OpStatus }

// Validate checks the bounds.
func (r *StatusNotice) Validate() error {
	var err error
	if r.Status == nil {
		err = errors.New("status: missing")
	}
	return errors.Join(err, checkName("source", r.Source, false), r.Status.validate())
}

// AlertNotice is an alert the worker raised (and sent by mail and
// webhook), for the console's status. Kind is one of services/alertkind.
type AlertNotice struct {
	Kind     string `json:"kind"`
	Source   string `json:"source,omitempty"`
	Snapshot string `json:"snapshot,omitempty"`
	Text     string `json:"text"`
}

// Op is alert.
func (*AlertNotice) Op() Op { return OpAlert }

// Validate checks the bounds.
func (r *AlertNotice) Validate() error {
	var err error
	if r.Snapshot != "" {
		err = checkSnapshot(r.Snapshot)
	}
	return errors.Join(err, checkName("kind", r.Kind, false), checkName("source", r.Source, true), checkText("text", r.Text))
}

// PrimaryNotice says the worker left a failed disk out and writes to
// Disk now.
type PrimaryNotice struct {
	Disk Disk `json:"disk"`
}

// Op is primary.
func (*PrimaryNotice) Op() Op { return OpPrimary }

// Validate checks the bounds.
func (r *PrimaryNotice) Validate() error { return r.Disk.validate() }

// MirrorNotice is the worker's latest word on the mirror, for status.
type MirrorNotice struct {
	Text string `json:"text"`
}

// Op is mirror.
func (*MirrorNotice) Op() Op { return OpMirror }

// Validate checks the bounds.
func (r *MirrorNotice) Validate() error { return checkText("text", r.Text) }

// ScrubProgressNotice is where the scheduled scrub's pass stands
// (services/mirror.ScrubProgress), for status; text only, PID 1 acts on
// none of it.
type ScrubProgressNotice struct {
	Text string `json:"text"`
}

// Op is scrub-progress.
func (*ScrubProgressNotice) Op() Op { return OpScrubProgress }

// Validate checks the bounds.
func (r *ScrubProgressNotice) Validate() error { return checkText("text", r.Text) }

// checkName accepts 1..MaxName bytes of UTF-8 without control characters
// (0 bytes too when empty is allowed).
func checkName(what, s string, empty bool) error {
	if s == "" {
		if empty {
			return nil
		}
		return fmt.Errorf("%s: empty", what)
	}
	if len(s) > MaxName {
		return fmt.Errorf("%s: %d bytes, over %d", what, len(s), MaxName)
	}
	if !utf8.ValidString(s) || strings.ContainsFunc(s, isControl) {
		return fmt.Errorf("%s %q: not printable UTF-8", what, s)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// checkText bounds free text; it is quoted wherever it is shown.
func checkText(what, s string) error {
	if len(s) > MaxText {
		return fmt.Errorf("%s: %d bytes, over %d", what, len(s), MaxText)
	}
	return nil
}

// checkSnapshot accepts what could be a snapshot ID: letters, digits and
// '-', at most MaxSnapshotID bytes. The receiver checks it names one.
func checkSnapshot(s string) error {
	if s == "" || len(s) > MaxSnapshotID {
		return fmt.Errorf("snapshot: %d bytes, want 1..%d", len(s), MaxSnapshotID)
	}
	for _, c := range []byte(s) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
			return fmt.Errorf("snapshot %q: not an ID", s)
		}
	}
	return nil
}

func checkPath(what, s string) error {
	if s == "" || len(s) > MaxPath || !strings.HasPrefix(s, "/") || strings.ContainsFunc(s, isControl) {
		return fmt.Errorf("%s %q: want an absolute path of at most %d bytes", what, s, MaxPath)
	}
	return nil
}

func checkBytes(what string, b []byte, lo, hi int) error {
	if len(b) < lo || len(b) > hi {
		return fmt.Errorf("%s: %d bytes, want %d..%d", what, len(b), lo, hi)
	}
	return nil
}

// Clip makes s fit a text field: valid UTF-8, at most MaxText bytes, cut
// at a rune boundary.
func Clip(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= MaxText {
		return s
	}
	cut := MaxText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
