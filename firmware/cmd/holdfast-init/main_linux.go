package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	stdlog "log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/u-root/u-root/pkg/kmodule"
	"github.com/u-root/u-root/pkg/libinit"
	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/boards"
	"github.com/holdfast-appliance/holdfast/firmware/appliance"
	"github.com/holdfast-appliance/holdfast/firmware/console/frame"
	"github.com/holdfast-appliance/holdfast/firmware/console/port"
	"github.com/holdfast-appliance/holdfast/firmware/reaper"
	"github.com/holdfast-appliance/holdfast/firmware/roles"
	"github.com/holdfast-appliance/holdfast/firmware/worker"
)

// Version is the appliance firmware version shown in the banner.
const Version = "0.2.0"

// BoardFile names the board this initramfs was built for (written by
// package initramfs).
const BoardFile = "/etc/holdfast/board"

// retryDelay is how long init waits before retrying a failed step.
const retryDelay = 5 * time.Second

func main() {
	// The worker, the sealer and the DHCP client are this binary run
	// again by PID 1 (firmware/roles).
	if role := os.Getenv(roles.Env); role != "" && os.Getpid() != 1 {
		os.Exit(roles.Run(role, worker.Run))
	}
	start := time.Now()
	ignoreKillingSignals()
	libinit.CreateRootfs()
	libinit.SetEnv()
	ctx := context.Background()
	// PID 1 collects orphans, leaving its own children to their Wait.
	children := reaper.New()
	go children.Loop(ctx)
	for {
		err := runRecovered(ctx, start, children)
		// run only returns on a failure; init must never exit.
		fmt.Fprintf(os.Stderr, "holdfast-init: %v; retrying in %s\n", err, retryDelay)
		time.Sleep(retryDelay)
	}
}

// ignoreKillingSignals ignores every signal whose Go default would end
// PID 1 (and with it the kernel): the kernel delivers to init only the
// signals it handles (or drops those it ignores), so a uid-0 intruder's
// kill(1, SIGTERM) does nothing. SIGSEGV, SIGBUS and SIGFPE are ignored
// too: for these Go keeps its handler, so a real fault still becomes a
// panic, and drops only those sent by kill (the attack suite's SIGBUS
// crashed PID 1 before). SIGCHLD (ignoring it would reap children before
// their Wait) and SIGURG (goroutine preemption) stay Go's own.
func ignoreKillingSignals() {
	var sigs []os.Signal
	for s := unix.Signal(1); s <= 31; s++ {
		switch s {
		case unix.SIGKILL, unix.SIGSTOP, unix.SIGCHLD, unix.SIGURG:
			continue
		}
		sigs = append(sigs, s)
	}
	signal.Ignore(sigs...)
}

// runRecovered runs run and turns a panic into an error: if PID 1 exits,
// even by a panic, the kernel panics with it.
func runRecovered(ctx context.Context, start time.Time, children *reaper.Reaper) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return run(ctx, start, children)
}

// crlf turns "\n" into "\r\n" for a raw serial line.
type crlf struct{ w io.Writer }

func (c crlf) Write(p []byte) (int, error) {
	if _, err := c.w.Write([]byte(strings.ReplaceAll(strings.ReplaceAll(string(p), "\r\n", "\n"), "\n", "\r\n"))); err != nil {
		return 0, err
	}
	return len(p), nil
}

func run(ctx context.Context, start time.Time, children *reaper.Reaper) error {
	name, err := os.ReadFile(BoardFile)
	if err != nil {
		return fmt.Errorf("board: %w", err)
	}
	board, err := boards.Load(strings.TrimSpace(string(name)))
	if err != nil {
		return err
	}
	dev := "/dev/" + board.Console.Device
	tty, err := port.OpenTTY(dev, board.Console.Baud)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	defer tty.Close()

	typedR, typedW := io.Pipe()
	// What the operator types arrives as text between frames; it is
	// echoed, since a serial line has no terminal driver to do it.
	echo := &echoWriter{}
	conn := frame.NewConn(tty, frame.Options{Text: io.MultiWriter(typedW, echo)})
	echo.w = connWriter{conn}
	human := crlf{connWriter{conn}}
	log := hclog.New(&hclog.LoggerOptions{
		Name: "holdfast", Level: hclog.Info, Output: human, Color: hclog.ColorOff,
		TimeFormat: "15:04:05.000",
	})
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	fmt.Fprintf(human, "\n==== Holdfast appliance %s ====\nboard %s (%s), kernel %s, console %s\n",
		Version, board.Name, board.Description, unix.ByteSliceToString(uts.Release[:]), dev)
	log.Info("phase 1/8 boot: kernel and initramfs up", "since_init", time.Since(start).Round(time.Millisecond))

	log.Info("phase 2/8 board: loading modules", "count", len(board.Modules))
	loadModules(log, board.Modules)
	pcr11 := reportTPM(log, board)

	// u-root's dhclient logs through the standard library's log package,
	// whole DHCP packets included: keep the first line of each message.
	stdlog.SetOutput(roles.FirstLine{W: log.Named("net").StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true})})
	stdlog.SetFlags(0)

	runErr := make(chan error, 1)
	go func() { runErr <- conn.Run(ctx) }()
	typed := make(chan string, 4)
	go func() {
		s := bufio.NewScanner(typedR)
		s.Split(scanLines)
		for s.Scan() {
			select {
			case typed <- s.Text():
			default:
			}
		}
	}()
	appErr := make(chan error, 1)
	go func() {
		appErr <- appliance.Run(ctx, appliance.Options{
			Board: board, Conn: conn, Human: connWriter{conn}, Typed: typed, Log: log,
			Version: Version, PCR11: pcr11, Start: start, LogOutput: human, Children: children,
		})
	}()
	select {
	case err := <-runErr:
		return fmt.Errorf("console link: %w", err)
	case err := <-appErr:
		return fmt.Errorf("appliance: %w", err)
	}
}

// echoWriter writes typed bytes back, Enter (CR or LF) as CR LF.
type echoWriter struct{ w io.Writer }

func (e *echoWriter) Write(p []byte) (int, error) {
	out := make([]byte, 0, len(p)+4)
	for _, c := range p {
		switch c {
		case '\r', '\n':
			out = append(out, '\r', '\n')
		case 0x7f, 0x08:
			out = append(out, 0x08, ' ', 0x08)
		default:
			if c >= 0x20 && c < 0x7f {
				out = append(out, c)
			}
		}
	}
	if len(out) > 0 {
		_, _ = e.w.Write(out)
	}
	return len(p), nil
}

// scanLines splits typed text into lines ended by CR, LF or CR LF (a
// serial terminal sends CR for Enter), dropping empty ones. Backspace
// removes the character before it.
func scanLines(data []byte, atEOF bool) (int, []byte, error) {
	// bufio.Scanner reads more input after a nil token instead of
	// splitting what it holds again, so empty lines are skipped here.
	start := 0
	for i, c := range data {
		if c != '\r' && c != '\n' {
			continue
		}
		if line := editLine(data[start:i]); len(line) > 0 {
			return i + 1, line, nil
		}
		start = i + 1
	}
	if atEOF && start < len(data) {
		if line := editLine(data[start:]); len(line) > 0 {
			return len(data), line, nil
		}
		return len(data), nil, nil
	}
	return start, nil, nil
}

func editLine(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		switch {
		case c == 0x7f || c == 0x08:
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		case c >= 0x20:
			out = append(out, c)
		}
	}
	return out
}

// connWriter writes human text between frames.
type connWriter struct{ c *frame.Conn }

func (w connWriter) Write(p []byte) (int, error) { return w.c.WriteText(p) }

func loadModules(log hclog.Logger, mods []string) {
	for _, m := range mods {
		t := time.Now()
		if err := kmodule.Probe(m, ""); err != nil {
			log.Warn("module not loaded", "module", m, "error", err)
			continue
		}
		log.Info("module loaded", "module", m, "took", time.Since(t).Round(time.Millisecond))
	}
	blocks, _ := filepath.Glob("/sys/block/*")
	var names []string
	for _, b := range blocks {
		names = append(names, filepath.Base(b))
	}
	log.Info("block devices", "devices", strings.Join(names, " "))
}

// reportTPM logs whether a TPM is present and returns its PCR 11 (empty
// if unknown), which the image builder predicts.
func reportTPM(log hclog.Logger, board *boards.Board) string {
	if _, err := os.Stat("/sys/class/tpm/tpm0"); err != nil {
		if board.TPM.AllowNoTPMTestMode {
			log.Warn("no TPM; board allows TPM-less TEST MODE")
		} else {
			log.Error("no TPM found: the appliance will stay in safe mode")
		}
		return ""
	}
	pcr, err := os.ReadFile("/sys/class/tpm/tpm0/pcr-sha256/11")
	if err != nil {
		log.Warn("TPM present, PCR 11 unreadable", "error", err)
		return ""
	}
	v := strings.ToLower(strings.TrimSpace(string(pcr)))
	log.Info("TPM present", "pcr11", v)
	return v
}
