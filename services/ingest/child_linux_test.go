package ingest

// The test binary doubles as a child process that runs one pull, so that
// its peak RSS can be measured apart from the test (the MinIO it talks to,
// the hostile proxy and the checks all stay in the parent).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/tools/testminio"
)

// childEnv names the file of a child's pullParams. The child removes it
// from its environment before anything else, so that nothing it might
// start inherits the role (os/exec keeps the first of duplicate variables,
// so a stale role would win over a fresh one and loop).
const childEnv = "HOLDFAST_INGEST_TEST_CHILD"

func TestMain(m *testing.M) {
	if params := os.Getenv(childEnv); params != "" {
		os.Unsetenv(childEnv)
		os.Exit(pullChild(params))
	}
	os.Exit(m.Run())
}

// pullParams is what a child pulls, and where it reports.
type pullParams struct {
	StoreDir  string
	Source    string // source name
	Endpoint  string
	Bucket    string
	Retries   int
	Parallel  int
	Limits    config.Limits
	Net       NetLimits
	Timeout   time.Duration // of the whole pull (the context)
	StopAfter bool          // cancel the pull once the listing is done
	LogPath   string
	OutPath   string
}

// pullOutcome is what a child reports.
type pullOutcome struct {
	Result     *Result
	Err        string
	Incomplete bool // Err wraps ErrIncomplete
	Seconds    float64
	VmHWMKiB   int64 // the child's own reading of /proc/self/status
}

// stopAfterListing cancels the pull when the plan is known.
type stopAfterListing struct{ cancel context.CancelFunc }

func (s stopAfterListing) Planned(int, int64) { s.cancel() }
func (s stopAfterListing) Transferred(int)    {}

// pullChild runs one pull as described in the file params and writes a
// pullOutcome. It returns the exit code.
func pullChild(params string) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "pull child: %v\n", err)
		return 2
	}
	raw, err := os.ReadFile(params)
	if err != nil {
		return fail(err)
	}
	var pp pullParams
	if err := json.Unmarshal(raw, &pp); err != nil {
		return fail(err)
	}
	// As `holdfast pull` does: a tighter GC target keeps peak RSS down.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	lf, err := os.Create(pp.LogPath)
	if err != nil {
		return fail(err)
	}
	defer lf.Close()
	log := hclog.New(&hclog.LoggerOptions{Name: "child", Level: hclog.Info, Output: lf})
	ctx, cancel := context.WithTimeout(context.Background(), pp.Timeout)
	defer cancel()
	s, err := store.Open(ctx, pp.StoreDir, testKey, store.Options{Logger: log.Named("store")})
	if err != nil {
		return fail(err)
	}
	src := testSource(pp.Source, pp.Endpoint, pp.Bucket)
	src.S3.AccessKey, src.S3.SecretKey = testminio.AccessKey, config.Secret(testminio.SecretKey)
	src.Retries, src.Parallel, src.Limits = pp.Retries, pp.Parallel, pp.Limits
	p := &Puller{Store: s, Log: log.Named("pull"), Net: pp.Net}
	if pp.StopAfter {
		var stop context.CancelFunc
		ctx, stop = context.WithCancel(ctx)
		defer stop()
		p.Progress = stopAfterListing{stop}
	}
	start := time.Now()
	res, err := p.Pull(ctx, src)
	if err != nil && res == nil {
		// What `holdfast pull` and the Scheduler log for a pull that
		// committed nothing.
		log.Error("pull failed", "source", src.Name, "error", err)
	}
	out := pullOutcome{Result: res, Seconds: time.Since(start).Seconds(), Incomplete: errors.Is(err, ErrIncomplete)}
	if err != nil {
		out.Err = err.Error()
	}
	if cerr := s.Close(); cerr != nil {
		return fail(cerr)
	}
	out.VmHWMKiB = vmHWM("self")
	raw, err = json.Marshal(out)
	if err != nil {
		return fail(err)
	}
	if err := os.WriteFile(pp.OutPath, raw, 0o600); err != nil {
		return fail(err)
	}
	return 0
}

// vmHWM returns the VmHWM (peak RSS) line of /proc/<pid>/status in KiB, or
// -1.
func vmHWM(pid string) int64 {
	raw, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// childRun is a finished child.
type childRun struct {
	pullOutcome
	Log  string
	Wall time.Duration
}

// runPullChild runs pp in a child process (this test binary) and returns
// its outcome, its log and its peak RSS. The peak is the child's own VmHWM,
// read just before it exits: the rusage Maxrss of a child started by
// os/exec is useless here, since Linux carries the high-water mark of the
// memory the child had before exec (os/exec forks with CLONE_VM, so that
// is the parent's, the whole test binary's) into the child.
func runPullChild(t *testing.T, pp pullParams) childRun {
	t.Helper()
	dir := t.TempDir()
	pp.LogPath, pp.OutPath = filepath.Join(dir, "child.log"), filepath.Join(dir, "outcome.json")
	raw, err := json.Marshal(pp)
	if err != nil {
		t.Fatal(err)
	}
	params := filepath.Join(dir, "params.json")
	if err := os.WriteFile(params, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), pp.Timeout+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = []string{childEnv + "=" + params}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, childEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	combined, err := cmd.CombinedOutput()
	run := childRun{Wall: time.Since(start)}
	logText, _ := os.ReadFile(pp.LogPath)
	run.Log = string(logText)
	if err != nil {
		t.Fatalf("pull child: %v\noutput:\n%s\nlog:\n%s", err, combined, logText)
	}
	raw, err = os.ReadFile(pp.OutPath)
	if err != nil {
		t.Fatalf("pull child wrote no outcome: %v\noutput:\n%s", err, combined)
	}
	if err := json.Unmarshal(raw, &run.pullOutcome); err != nil {
		t.Fatal(err)
	}
	if len(combined) > 0 {
		t.Logf("pull child output:\n%s", combined)
	}
	return run
}
