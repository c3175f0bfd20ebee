package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/caps"
	"github.com/holdfast-appliance/holdfast/firmware/disks"
)

const (
	boardFile    = "/etc/holdfast/board"
	pid1CommFile = "/proc/1/comm"
	helperPrefix = "hf-helper-"
	maxChanged   = 50
)

// config is the command line.
type config struct {
	inVM, list                                     bool
	store, bootDisk, configDir, modulesDir, mke2fs string
	dataDisks                                      []string
	sealerPID, workerPID, ownerUID                 int
	exportPID                                      int         // 0: no export runs
	otherStores                                    []string    // the mirror disks' stores
	roles                                          []roleIdent // -roles (roles_linux.go)
	rolesFlag                                      string
	asOwner, identityBattery                       string
	crash, usernsMount                             bool
	rest                                           []string
}

func main() { os.Exit(run(os.Args, os.Stdout, os.Stderr)) }

// run is main with its exit status returned.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && strings.HasPrefix(filepath.Base(args[0]), helperPrefix) {
		return helperMain(filepath.Base(args[0]), stderr)
	}
	if len(args) > 1 && args[1] == workerCommand {
		return workerMain(args[2:], stdout, stderr) // worker_linux.go
	}
	cfg, err := parseFlags(args[1:], stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2 // the flag package has said why
	}
	if cfg.list {
		printList(stdout, techniques())
		return 0
	}
	if cfg.crash {
		crashForCore()
	}
	if err := guard(cfg.inVM, boardFile, pid1CommFile); err != nil {
		fmt.Fprintf(stderr, "holdfast-attack: %v\n", err)
		return 2
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintf(stderr, "holdfast-attack: %v\n", err)
		return 2
	}
	switch {
	case cfg.usernsMount:
		return usernsChild(cfg, stdout)
	case cfg.asOwner != "":
		return ownerChild(cfg, stdout)
	case cfg.identityBattery != "":
		return identityChild(cfg, stdout)
	}
	return attack(cfg, stdout, stderr)
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("holdfast-attack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var disks string
	fs.BoolVar(&c.inVM, "in-vm", false, "confirm that this runs inside a Holdfast test VM (required for anything but -list)")
	fs.BoolVar(&c.list, "list", false, "print the technique table and exit (safe anywhere)")
	fs.StringVar(&c.store, "store", "", "store directory on the mounted data disk")
	fs.StringVar(&disks, "data-disks", "", "comma-separated whole-disk nodes of the data disks, the mounted one first")
	fs.StringVar(&c.bootDisk, "boot-disk", "", "whole-disk node of the boot medium")
	fs.StringVar(&c.configDir, "config-dir", "", "mount point of the config partition")
	fs.IntVar(&c.sealerPID, "sealer-pid", 0, "PID of the sealer")
	fs.IntVar(&c.workerPID, "worker-pid", 0, "PID of the worker")
	fs.IntVar(&c.ownerUID, "owner-uid", 1000, "uid (and gid) owning the store")
	fs.IntVar(&c.exportPID, "export-pid", 0, "PID of the export, 0 when none runs")
	var others string
	fs.StringVar(&others, "other-stores", "", "comma-separated store directories of the other (mirror) data disks")
	fs.StringVar(&c.rolesFlag, "roles", "", "the roles' identities, NAME=UID:GID[:GROUP...] comma-separated")
	fs.StringVar(&c.modulesDir, "modules-dir", "", "directory of the kernel's modules (/lib/modules/RELEASE)")
	fs.StringVar(&c.mke2fs, "mke2fs", "", "path of mke2fs in the image")
	fs.StringVar(&c.asOwner, "as-owner", "", "internal: run one owner technique, or _walk, _fingerprint, _handle, _kill-sealer, as the owner uid")
	fs.StringVar(&c.identityBattery, "identity-battery", "", "internal: run one battery of the identity techniques as this process's uid")
	fs.BoolVar(&c.crash, "crash", false, "internal: crash with a core dump (core_pattern helper technique)")
	fs.BoolVar(&c.usernsMount, "userns-mount", false, "internal: mount tmpfs over the store (run inside a new user namespace)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	for _, d := range strings.Split(disks, ",") {
		if d = strings.TrimSpace(d); d != "" {
			c.dataDisks = append(c.dataDisks, d)
		}
	}
	for _, d := range strings.Split(others, ",") {
		if d = strings.TrimSpace(d); d != "" {
			c.otherStores = append(c.otherStores, filepath.Clean(d))
		}
	}
	var err error
	if c.roles, err = parseRoles(c.rolesFlag); err != nil {
		fmt.Fprintf(stderr, "holdfast-attack: -roles: %v\n", err)
		return nil, err
	}
	c.rest = fs.Args()
	return c, nil
}

func (c *config) validate() error {
	var missing []string
	for _, f := range []struct {
		name string
		ok   bool
	}{
		{"-store (an absolute path)", filepath.IsAbs(c.store) && filepath.Clean(c.store) != "/"},
		{"-data-disks", len(c.dataDisks) > 0},
		{"-boot-disk", c.bootDisk != ""},
		{"-config-dir", c.configDir != ""},
		{"-sealer-pid", c.sealerPID > 1},
		{"-worker-pid", c.workerPID > 1},
		{"-owner-uid", c.ownerUID > 0},
		{"-modules-dir", c.modulesDir != ""},
		{"-mke2fs", c.mke2fs != ""},
	} {
		if !f.ok {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing or invalid flags: %s", strings.Join(missing, ", "))
	}
	c.store = filepath.Clean(c.store)
	return nil
}

// childArgs are the flags a re-executed child needs.
func (c *config) childArgs() []string {
	return []string{
		"-in-vm", "-store", c.store, "-data-disks", strings.Join(c.dataDisks, ","),
		"-boot-disk", c.bootDisk, "-config-dir", c.configDir,
		"-sealer-pid", strconv.Itoa(c.sealerPID), "-worker-pid", strconv.Itoa(c.workerPID),
		"-owner-uid", strconv.Itoa(c.ownerUID), "-modules-dir", c.modulesDir, "-mke2fs", c.mke2fs,
		"-export-pid", strconv.Itoa(c.exportPID), "-other-stores", strings.Join(c.otherStores, ","), "-roles", c.rolesFlag,
	}
}

// guard refuses to run anywhere but inside a Holdfast test VM.
func guard(inVM bool, board, comm string) error {
	if !inVM {
		return errors.New("refusing to run: -in-vm not given; this program destroys the disks of the machine it runs on (use -list to see its techniques)")
	}
	if _, err := os.Stat(board); err != nil {
		return fmt.Errorf("refusing to run: not a Holdfast appliance (%w)", err)
	}
	b, err := os.ReadFile(comm)
	if err != nil {
		return fmt.Errorf("refusing to run: cannot tell what PID 1 is: %w", err)
	}
	name := strings.TrimSpace(string(b))
	if name != "init" && !strings.HasPrefix(name, "holdfast") {
		return fmt.Errorf("refusing to run: PID 1 is %q, not init or holdfast-*", name)
	}
	return nil
}

// crashForCore dies by SIGABRT with a core dump, for the core_pattern
// helper technique.
func crashForCore() {
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0)
	lim := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
	if unix.Setrlimit(unix.RLIMIT_CORE, &lim) != nil {
		var cur unix.Rlimit
		if unix.Getrlimit(unix.RLIMIT_CORE, &cur) == nil {
			cur.Cur = cur.Max
			_ = unix.Setrlimit(unix.RLIMIT_CORE, &cur)
		}
	}
	debug.SetTraceback("crash")
	panic("holdfast-attack: deliberate crash to run the core_pattern helper")
}

// env is the state shared by the techniques.
type env struct {
	cfg            *config
	stdout, stderr io.Writer
	self           string
	asOwner        bool // this process is an owner child
	capEff         uint64
	t              targets
	mnt            disks.MountEntry
	becomeErr      error // why the owner uid cannot be assumed
	broker         *broker
	stolen         []stolenFD
	initial        map[string]entry
	initialErr     error
	final          map[string]entry
	finalErr       error
	finalDone      bool
}

func newEnv(cfg *config, stdout, stderr io.Writer) *env {
	e := &env{cfg: cfg, stdout: stdout, stderr: stderr, self: "/proc/self/exe", broker: openBroker()}
	if p, err := os.Executable(); err == nil {
		e.self = p
	}
	if s, err := caps.Read(0); err == nil {
		e.capEff = uint64(s.Effective)
	}
	if ms, err := readMounts(); err == nil {
		e.mnt = mountFor(cfg.store, ms)
	}
	return e
}

func (e *env) abs(rel string) string { return filepath.Join(e.cfg.store, filepath.FromSlash(rel)) }

// attack runs every technique and prints the report.
func attack(cfg *config, stdout, stderr io.Writer) int {
	e := newEnv(cfg, stdout, stderr)
	table := techniques()
	fmt.Fprintf(stdout, "ATTACK START techniques=%d uid=%d caps=0x%016x\n", len(table), os.Getuid(), e.capEff)
	e.initial, e.initialErr = e.walk()
	if e.initialErr != nil {
		fmt.Fprintf(stderr, "holdfast-attack: %v\n", e.initialErr)
	}
	rels := make([]string, 0, len(e.initial))
	for k := range e.initial {
		rels = append(rels, k)
	}
	sort.Strings(rels)
	e.t = pickTargets(rels)
	var refused, succeeded, na int
	for i := range table {
		t := &table[i]
		r := e.runOne(t)
		fmt.Fprintln(stdout, formatLine(i+1, t, r))
		switch r.outcome {
		case outRefused:
			refused++
		case outSucceeded:
			succeeded++
		default:
			na++
		}
	}
	if !e.finalDone {
		e.final, e.finalErr = e.walk()
	}
	changes := integrityChanges(e.initial, e.initialErr, e.final, e.finalErr)
	for i, c := range changes {
		if i == maxChanged {
			break
		}
		fmt.Fprintf(stdout, "ATTACK CHANGED %s: %s\n", showPath(c.path), clean(c.what))
	}
	storeChanged := len(changes) > 0
	fmt.Fprintf(stdout, "ATTACK SUMMARY techniques=%d refused=%d succeeded=%d na=%d store_changed=%t\n", len(table), refused, succeeded, na, storeChanged)
	if succeeded == 0 && !storeChanged {
		return 0
	}
	return 1
}

// runOne runs a technique; a panic counts as a success, to be safe.
func (e *env) runOne(t *technique) (r result) {
	defer func() {
		if p := recover(); p != nil {
			r = succeededf("technique crashed, counted as a success to be safe: %v", p)
		}
	}()
	if t.owner && !e.asOwner {
		return e.runAsOwner(t)
	}
	return t.run(e)
}

// becomeError says why a child could not be started as the owner.
type becomeError struct {
	uid int
	err error
}

func (b *becomeError) Error() string { return fmt.Sprintf("cannot become uid %d: %v", b.uid, b.err) }

// reply is what an owner child prints on stdout, as JSON.
type reply struct {
	Outcome    string           `json:"outcome,omitempty"`
	Detail     string           `json:"detail,omitempty"`
	Walk       map[string]entry `json:"walk,omitempty"`
	Handle     []byte           `json:"handle,omitempty"`
	HandleType int32            `json:"handle_type,omitempty"`
	Err        string           `json:"err,omitempty"`
}

// callOwner re-executes this program as the owner uid in mode and decodes
// its reply.
func (e *env) callOwner(timeout time.Duration, mode string, extra ...string) (reply, error) {
	if e.becomeErr != nil {
		return reply{}, e.becomeErr
	}
	args := append([]string{"-as-owner", mode}, e.cfg.childArgs()...)
	out, errText, werr, serr := e.spawnAs(e.cfg.ownerUID, e.cfg.ownerUID, nil, timeout, append(args, extra...))
	if serr != nil {
		e.becomeErr = &becomeError{e.cfg.ownerUID, serr}
		return reply{}, e.becomeErr
	}
	var r reply
	if err := json.Unmarshal(out, &r); err != nil {
		return reply{}, fmt.Errorf("owner child %s: no reply (%v; exit: %v; stderr: %s)", mode, err, werr, lastLine(errText))
	}
	return r, nil
}

// spawnAs runs this program with args as uid:gid (no supplementary
// groups) and returns its stdout and stderr, the error of its run, and
// startErr when it could not be started as that uid at all. In the
// appliance this program holds no capability (nothing after lockdown can
// change its uid), so a test image's PID 1 starts it (the attack broker,
// e.broker); elsewhere (host tests) it is started here with Credential.
func (e *env) spawnAs(uid, gid int, groups []int, timeout time.Duration, args []string) (stdout []byte, stderr string, runErr, startErr error) {
	if e.broker != nil {
		rep, err := e.broker.run(uid, gid, groups, timeout, args)
		if err != nil {
			return nil, "", nil, err
		}
		if rep.Err != "" {
			runErr = errors.New(rep.Err)
		}
		return rep.Stdout, rep.Stderr, runErr, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.self, args...)
	cmd.Args[0] = "holdfast-attack"
	g := []uint32{}
	for _, x := range groups {
		g = append(g, uint32(x))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: g}}
	cmd.Env = []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin"}
	cmd.Dir = "/"
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		return nil, "", nil, err
	}
	runErr = cmd.Wait()
	return out.Bytes(), errb.String(), runErr, nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// runAsOwner runs an owner technique in a child running as the owner uid.
func (e *env) runAsOwner(t *technique) result {
	timeout := 3 * time.Minute
	if t.cat == "fill" {
		timeout = 20 * time.Minute
	}
	r, err := e.callOwner(timeout, t.name)
	var be *becomeError
	if errors.As(err, &be) {
		return naf("%v", be)
	}
	if err != nil {
		return succeededf("owner child failed, counted as a success to be safe: %v", err)
	}
	if r.Err != "" {
		return succeededf("owner child failed, counted as a success to be safe: %s", r.Err)
	}
	o, err := parseOutcome(r.Outcome)
	if err != nil {
		return succeededf("owner child: %v", err)
	}
	return result{o, r.Detail}
}

// walk records the whole store as the owner (as this process when the
// owner uid cannot be assumed).
func (e *env) walk() (map[string]entry, error) {
	if !e.asOwner {
		r, err := e.callOwner(15*time.Minute, "_walk")
		var be *becomeError
		switch {
		case err == nil && r.Err != "":
			return r.Walk, errors.New(r.Err)
		case err == nil:
			return r.Walk, nil
		case !errors.As(err, &be):
			return nil, err
		}
	}
	return walkStore(e.cfg.store)
}

// states records some store paths as the owner (as this process when the
// owner uid cannot be assumed).
func (e *env) states(rels []string) (map[string]entry, error) {
	if !e.asOwner {
		r, err := e.callOwner(5*time.Minute, "_fingerprint", rels...)
		var be *becomeError
		switch {
		case err == nil && r.Err != "":
			return nil, errors.New(r.Err)
		case err == nil:
			return r.Walk, nil
		case !errors.As(err, &be):
			return nil, err
		}
	}
	m := statePaths(e.cfg.store, rels)
	if root, ok := m["."]; ok && (root.Type == "error" || root.Err != "") {
		return m, fmt.Errorf("cannot inspect the store as uid %d: %s", os.Getuid(), root.Err)
	}
	return m, nil
}

// storeAttempt runs one destructive attempt on the store and judges it by
// re-reading the targeted paths before and after.
func (e *env) storeAttempt(attempt func() (string, error)) result {
	rels := e.t.checkSet()
	before, berr := e.states(rels)
	note, err := attempt()
	after, aerr := e.states(rels)
	checkErr := errors.Join(berr, aerr)
	var changes []change
	if checkErr == nil {
		changes = diffStates(before, after)
	}
	return judge(note, err, changes, checkErr)
}

// ownerChild is the -as-owner mode.
func ownerChild(cfg *config, stdout io.Writer) int {
	e := newEnv(cfg, stdout, io.Discard)
	e.asOwner = true
	var r reply
	switch cfg.asOwner {
	case "_walk":
		m, err := walkStore(cfg.store)
		r.Walk, r.Err = m, errOr(err, "")
	case "_fingerprint":
		r.Walk = statePaths(cfg.store, cfg.rest)
	case "_handle":
		if len(cfg.rest) != 1 {
			r.Err = "_handle takes one path"
			break
		}
		h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, e.abs(cfg.rest[0]), 0)
		if err != nil {
			r.Err = fmt.Sprintf("name_to_handle_at %s: %v", short(cfg.rest[0]), err)
			break
		}
		r.Handle, r.HandleType = h.Bytes(), h.Type()
	case "_kill-sealer":
		r.Err = errOr(unix.Kill(cfg.sealerPID, unix.SIGKILL), "")
	default:
		t := findTechnique(cfg.asOwner)
		if t == nil || !t.owner {
			r.Err = fmt.Sprintf("no owner technique %q", cfg.asOwner)
			break
		}
		rels, _ := listStore(cfg.store)
		e.t = pickTargets(rels)
		res := e.runOne(t)
		r.Outcome, r.Detail = res.outcome.String(), res.detail
	}
	if err := json.NewEncoder(stdout).Encode(r); err != nil {
		return 1
	}
	return 0
}
