package main

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/caps"
	"github.com/holdfast-appliance/holdfast/services/sealer"
	"github.com/holdfast-appliance/holdfast/services/store"
)

// The worker adversary (issue 15): code running inside the worker, uid
// 1000, with its keys. PID 1's test-only console command attack-worker
// (firmware/appliance/attack_worker_linux.go) starts
//
//	holdfast-attack worker-adversary -in-vm -uid 1000 -stores DIR,... -disks NAME,...
//
// with the worker's uid and gid (Credential; started as uid 0 instead, it
// makes itself the worker with caps.BecomeAndExec, what the worker's own
// become- stage calls: uid and gid 1000, no groups, no capabilities, an
// empty bounding set, no_new_privs); it checks those credentials, reads the
// store subkeys the worker gets in its "init" message (stdin, one line of
// JSON store.StoreKeys; the worker never holds the master key) and uses
// one sealer socket per store (fd 3 on), as the worker does. On every
// store it plants each class of issue 15 and prints one row per planted
// entry:
//
//	ATTACK N worker NAME: planted: disk=D path=P; what was planted
//
// The verdict is the next boots' (images/attack_worker_linux_test.go):
// the box reaches ready (or safe mode with an alert), every snapshot reads
// back byte-identical, prune expires nothing, and each entry is reported.
//
// | name                | planted                                                          |
// |---------------------|------------------------------------------------------------------|
// | index-cache-forged  | STORE/index/index authenticated with the meta key, claiming every|
// |                     | pack holds one unreferenced chunk (first disk; index/index is the|
// |                     | /dev/zero symlink on the others)                                 |
// | lying-pack          | a pack whose trailer claims every chunk of the old snapshots,    |
// |                     | garbage at their offsets, a name sorting first, offered to and   |
// |                     | sealed by the sealer                                             |
// | journal-fifo        | a FIFO named wip/<id>.journal                                    |
// | index-devzero       | index/index a symlink to /dev/zero (not the first disk)          |
// | retention-sparse    | a sparse 1 TiB file named like a retention record of a real      |
// |                     | snapshot in retention/ (append-only: it can never be removed)    |
// | manifest-symlink    | snapshots/<id>.snap a symlink to /dev/zero, offered to the sealer|
// | manifest-fifo       | snapshots/<id>.snap a FIFO, offered to the sealer                |
// | manifest-garbage    | snapshots/<id>.snap 64 KiB of random bytes, offered to the sealer|
// | manifest-hardlink   | snapshots/<id>.snap a hard link of STORE/lock, offered to the    |
// |                     | sealer                                                           |
// | junk-wip            | thousands of empty files in wip/                                 |
// | junk-state          | thousands of empty files in state/                               |
// | junk-index          | thousands of empty files in index/                               |
// | clock-log-junk      | random bytes appended to state/clock.log                         |
//
// Then, when PID 1 gave it control channels (-control-fd, -lying-fd;
// issue 16), it runs the control techniques of control_linux.go, one row
// each (ATTACK N worker-control NAME: refused|SUCCEEDED|n/a: detail), and
// ends with
//
//	ATTACK SUMMARY worker-adversary planted=P disks=D control=C succeeded=S
//
// exiting 1 when a control technique succeeded.

// workerCommand is the first argument that selects the worker adversary.
const workerCommand = "worker-adversary"

// Store layout and formats the adversary writes (services/store: doc.go,
// pack.go, index.go, crypto.go). Code inside the worker has the store's
// code and its keys: nothing here is a secret.
const (
	packMagic    = "HFPACK01"
	packEndMagic = "HFPKEND1"
	indexMagic   = "HFINDEX1"
	entrySize    = 32 + 4 + 4 + 4
	sealOverhead = 12 + 16
	// junkFiles is how many empty files go into each of wip/, state/ and
	// index/.
	junkFiles = 3000
	// sealerWait bounds one request to the sealer: a sealer that hangs on
	// a planted entry is a finding, not a hung test.
	sealerWait = 30 * time.Second
)

// workerArgs is the worker adversary's command line.
type workerArgs struct {
	inVM   bool
	uid    int
	stores []string
	disks  []string
	// controlFD and lyingFD are the control channels to PID 1 a TEST
	// image's PID 1 gives the adversary (control_linux.go); 0: none.
	controlFD, lyingFD int
	sources            []string
}

func parseWorkerArgs(args []string, stderr io.Writer) (*workerArgs, error) {
	w := &workerArgs{}
	fs := flag.NewFlagSet("holdfast-attack "+workerCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var stores, disks string
	fs.BoolVar(&w.inVM, "in-vm", false, "confirm that this runs inside a Holdfast test VM")
	fs.IntVar(&w.uid, "uid", 1000, "the worker's uid (and gid)")
	fs.StringVar(&stores, "stores", "", "comma-separated store directories, one per data disk; sealer sockets are fds 3.. in this order")
	fs.StringVar(&disks, "disks", "", "comma-separated disk names, as -stores")
	fs.IntVar(&w.controlFD, "control-fd", 0, "a control channel to PID 1, served by its handler for the worker (0: none)")
	fs.IntVar(&w.lyingFD, "lying-fd", 0, "a control channel on which PID 1 has the adversary carry out hold and extend (0: none)")
	var sources string
	fs.StringVar(&sources, "sources", "", "comma-separated sources of the config")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	w.stores = splitList(stores)
	w.disks = splitList(disks)
	w.sources = splitList(sources)
	if len(w.stores) == 0 || len(w.disks) != len(w.stores) {
		return nil, fmt.Errorf("-stores (%d) and -disks (%d) must name the same, non-zero number of disks", len(w.stores), len(w.disks))
	}
	for _, s := range w.stores {
		if !filepath.IsAbs(s) || filepath.Clean(s) == "/" {
			return nil, fmt.Errorf("store %q is not an absolute path below /", s)
		}
	}
	if w.uid <= 0 {
		return nil, fmt.Errorf("-uid %d: the worker is not root", w.uid)
	}
	return w, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// workerMain runs the worker adversary and returns the exit status.
func workerMain(args []string, stdout, stderr io.Writer) int {
	w, err := parseWorkerArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "holdfast-attack: %v\n", err)
		return 2
	}
	if err := guard(w.inVM, boardFile, pid1CommFile); err != nil {
		fmt.Fprintf(stderr, "holdfast-attack: %v\n", err)
		return 2
	}
	if os.Getuid() == 0 {
		// Become the worker exactly as its become- stage does; exec keeps
		// stdin (the key) and fds 3.. (the sealer sockets).
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintf(stderr, "holdfast-attack: own executable: %v\n", err)
			return 2
		}
		err = caps.BecomeAndExec(w.uid, w.uid, nil, exe, append([]string{"holdfast-attack", workerCommand}, args...), []string{"PATH=/bin:/sbin"})
		fmt.Fprintf(stderr, "holdfast-attack: become uid %d: %v\n", w.uid, err)
		return 2
	}
	s, err := caps.Read(0)
	if err != nil || os.Getuid() != w.uid || os.Getgid() != w.uid || s.Effective != 0 || s.Permitted != 0 || s.Bounding != 0 {
		fmt.Fprintf(stderr, "holdfast-attack: not the worker's credentials: uid %d gid %d capabilities %+v (%v)\n", os.Getuid(), os.Getgid(), s, err)
		return 2
	}
	var pairs []string
	for i, d := range w.disks {
		pairs = append(pairs, d+"="+w.stores[i])
	}
	fmt.Fprintf(stdout, "worker adversary: uid=%d gid=%d capabilities effective=%x permitted=%x bounding=%x; stores %s\n",
		os.Getuid(), os.Getgid(), s.Effective, s.Permitted, s.Bounding, strings.Join(pairs, " "))
	line, err := bufio.NewReader(io.LimitReader(os.Stdin, 4096)).ReadString('\n')
	if err != nil {
		fmt.Fprintf(stderr, "holdfast-attack: read the worker's store keys: %v\n", err)
		return 2
	}
	var keys store.StoreKeys
	if err := json.Unmarshal([]byte(line), &keys); err != nil || len(keys.Meta) != 32 {
		fmt.Fprintf(stderr, "holdfast-attack: worker's store keys: %d-byte meta key, %v\n", len(keys.Meta), err)
		return 2
	}
	// PID 1 carries out the console's hold and extend on the lying
	// channel as soon as the adversary runs: answer from the start.
	var lying *lyingWorker
	if w.lyingFD > 0 {
		lying = newLyingWorker(os.NewFile(uintptr(w.lyingFD), "lying worker"))
	}
	var targets []plantTarget
	for i, dir := range w.stores {
		fd := 3 + i
		if err := unix.SetNonblock(fd, true); err != nil {
			fmt.Fprintf(stderr, "holdfast-attack: sealer socket fd %d: %v\n", fd, err)
			return 2
		}
		conn := os.NewFile(uintptr(fd), "sealer")
		targets = append(targets, plantTarget{dir: dir, disk: w.disks[i], seal: deadlineSealer(conn, dir)})
	}
	n, err := plantAll(stdout, keys, targets)
	if err != nil {
		fmt.Fprintf(stderr, "holdfast-attack: %v\n", err)
		return 1
	}
	control, succeeded := 0, 0
	if w.controlFD > 0 {
		ctl := newRawConn(os.NewFile(uintptr(w.controlFD), "control"))
		controlAttack(controlTarget{ctl: ctl, lying: lying, sources: w.sources, store: w.stores[0]}, func(name string, r result) {
			n++
			control++
			if r.outcome == outSucceeded {
				succeeded++
			}
			fmt.Fprintf(stdout, "ATTACK %d worker-control %s: %s: %s\n", n, name, r.outcome, oneLine(r.detail))
		})
	}
	fmt.Fprintf(stdout, "ATTACK SUMMARY worker-adversary planted=%d disks=%d control=%d succeeded=%d\n", n-control, len(targets), control, succeeded)
	if succeeded > 0 {
		return 1
	}
	return 0
}

// oneLine keeps a detail on one row: control characters are escaped.
func oneLine(s string) string {
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// deadlineSealer asks the sealer over conn, each request bounded by
// sealerWait.
func deadlineSealer(conn *os.File, root string) func(string) error {
	c := sealer.NewClient(conn, root)
	return func(path string) error {
		if err := conn.SetDeadline(time.Now().Add(sealerWait)); err != nil {
			return fmt.Errorf("sealer deadline: %w", err)
		}
		return c.SealFile(path)
	}
}

// plantTarget is one store the adversary plants in.
type plantTarget struct {
	dir, disk string
	seal      func(path string) error // asks the sealer to seal a file
}

// planter prints one row per planted entry.
type planter struct {
	out io.Writer
	n   int
}

func (p *planter) row(t plantTarget, name, rel, detail string) {
	p.n++
	fmt.Fprintf(p.out, "ATTACK %d worker %s: planted: disk=%s path=%s; %s\n", p.n, name, t.disk, rel, detail)
}

// refused prints a row for an entry the kernel did not let the worker
// plant.
func (p *planter) refused(t plantTarget, name, rel string, err error) {
	p.n++
	fmt.Fprintf(p.out, "ATTACK %d worker %s: refused: disk=%s path=%s; could not plant: %v\n", p.n, name, t.disk, rel, err)
}

// plantAll plants every class on every store and returns how many rows it
// printed.
func plantAll(out io.Writer, keys store.StoreKeys, targets []plantTarget) (int, error) {
	p := &planter{out: out}
	for i, t := range targets {
		if err := plantStore(p, keys, t, i == 0); err != nil {
			return p.n, fmt.Errorf("disk %s (%s): %w", t.disk, t.dir, err)
		}
	}
	return p.n, nil
}

// metaKey is the meta key of the worker's store keys as an AEAD, after
// checking that the store at dir is the one they belong to.
func metaKey(keys store.StoreKeys, dir string) (cipher.AEAD, error) {
	id, err := store.ReadID(dir)
	if err != nil {
		return nil, fmt.Errorf("store ID: %w", err)
	}
	if id != keys.ID {
		return nil, fmt.Errorf("store %s has ID %x; the worker's keys are for %x", dir, id, keys.ID)
	}
	block, err := aes.NewCipher(keys.Meta)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return aead, nil
}

func seal(aead cipher.AEAD, dst, ad, plain []byte) []byte {
	var nonce [12]byte
	_, _ = rand.Read(nonce[:]) // never fails on Linux
	dst = append(dst, nonce[:]...)
	return aead.Seal(dst, nonce[:], plain, ad)
}

// storePack is a pack on disk and the chunk IDs its trailer claims.
type storePack struct {
	name string
	ids  [][32]byte
}

// readPacks reads every pack's trailer with the meta key.
func readPacks(dir string, meta cipher.AEAD) ([]storePack, error) {
	shards, err := os.ReadDir(filepath.Join(dir, "packs"))
	if err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	var packs []storePack
	for _, sh := range shards {
		if !sh.IsDir() {
			continue
		}
		es, err := os.ReadDir(filepath.Join(dir, "packs", sh.Name()))
		if err != nil {
			return nil, fmt.Errorf("list packs/%s: %w", sh.Name(), err)
		}
		for _, e := range es {
			if len(e.Name()) != 64 || !e.Type().IsRegular() {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, "packs", sh.Name(), e.Name()))
			if err != nil {
				return nil, fmt.Errorf("read pack %s: %w", e.Name(), err)
			}
			if len(b) < 8+12 || string(b[len(b)-8:]) != packEndMagic {
				continue
			}
			tl := int(binary.BigEndian.Uint32(b[len(b)-12:]))
			if tl < sealOverhead || tl > len(b)-20 {
				continue
			}
			sealed := b[len(b)-12-tl : len(b)-12]
			plain, err := meta.Open(nil, sealed[:12], sealed[12:], []byte("HFPT"))
			if err != nil || len(plain)%entrySize != 0 {
				continue
			}
			sp := storePack{name: e.Name()}
			for ; len(plain) > 0; plain = plain[entrySize:] {
				sp.ids = append(sp.ids, [32]byte(plain[:32]))
			}
			packs = append(packs, sp)
		}
	}
	sort.Slice(packs, func(i, j int) bool { return packs[i].name < packs[j].name })
	return packs, nil
}

// indexCachePack is one pack of the index cache (services/store/index.go).
type indexCachePack struct {
	Name    string `cbor:"1,keyasint"`
	Entries []byte `cbor:"2,keyasint"`
}

// forgeIndexCache writes an authentic index cache claiming that every pack
// holds exactly one chunk that no snapshot references.
func forgeIndexCache(dir string, meta cipher.AEAD, packs []storePack) error {
	var cache []indexCachePack
	for _, pk := range packs {
		e := make([]byte, entrySize)
		_, _ = rand.Read(e[:32])
		binary.BigEndian.PutUint32(e[32:], 8)
		binary.BigEndian.PutUint32(e[36:], sealOverhead+1)
		binary.BigEndian.PutUint32(e[40:], 1)
		cache = append(cache, indexCachePack{Name: pk.name, Entries: e})
	}
	enc, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		return fmt.Errorf("cbor: %w", err)
	}
	plain, err := enc.Marshal(cache)
	if err != nil {
		return fmt.Errorf("cbor: %w", err)
	}
	out := seal(meta, []byte(indexMagic), []byte("HFIX"), plain)
	tmp := filepath.Join(dir, "index", "index.forged")
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		return fmt.Errorf("write the forged cache: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "index", "index")); err != nil {
		return fmt.Errorf("install the forged cache: %w", err)
	}
	return nil
}

// lyingPack builds a pack whose trailer claims ids, with random bytes at
// their offsets, whose name (its SHA-256) sorts before before.
func lyingPack(meta cipher.AEAD, ids [][32]byte, before string) (name string, body []byte) {
	const blob = 64
	body = append(body, packMagic...)
	var entries []byte
	for _, id := range ids {
		off := len(body)
		g := make([]byte, blob)
		_, _ = rand.Read(g)
		body = append(body, g...)
		entries = append(entries, id[:]...)
		entries = binary.BigEndian.AppendUint32(entries, uint32(off))
		entries = binary.BigEndian.AppendUint32(entries, blob)
		entries = binary.BigEndian.AppendUint32(entries, blob-sealOverhead)
	}
	trailer := seal(meta, nil, []byte("HFPT"), entries)
	body = append(body, trailer...)
	body = binary.BigEndian.AppendUint32(body, uint32(len(trailer)))
	body = append(body, packEndMagic...)
	// Grind the first garbage blob until the name sorts first (and in
	// shard 00, before any real pack's).
	for c := uint64(0); ; c++ {
		binary.BigEndian.PutUint64(body[8:], c)
		sum := sha256.Sum256(body)
		name = hex.EncodeToString(sum[:])
		if strings.HasPrefix(name, "000") && name < before {
			return name, body
		}
	}
}

// fakeID is a snapshot ID no snapshot has (year 2001, n in the suffix).
func fakeID(n int) string { return fmt.Sprintf("20010101T000000Z-%08x", 0xadadad00+n) }

// plantStore plants every class in one store. first says whether it is
// the first disk (the forged cache goes there, the /dev/zero symlink at
// the same path on the others). What the kernel does not let the worker
// plant is a refused row; the rest goes on.
func plantStore(p *planter, keys store.StoreKeys, t plantTarget, first bool) error {
	meta, err := metaKey(keys, t.dir)
	if err != nil {
		return err
	}
	packs, err := readPacks(t.dir, meta)
	if err != nil {
		return err
	}
	if len(packs) == 0 {
		return errors.New("no pack with a readable trailer: nothing to attack")
	}
	abs := func(rel string) string { return filepath.Join(t.dir, filepath.FromSlash(rel)) }
	sealWord := func(rel string) string {
		if err := t.seal(abs(rel)); err != nil {
			return "the sealer refused: " + err.Error()
		}
		return "the sealer SEALED it"
	}
	try := func(name, rel string, plant func() (string, error)) {
		detail, err := plant()
		if err != nil {
			p.refused(t, name, rel, err)
			return
		}
		p.row(t, name, rel, detail)
	}

	// (1) The forged, authentic index cache.
	if first {
		try("index-cache-forged", "index/index", func() (string, error) {
			return fmt.Sprintf("authentic under the meta key; claims each of %d packs holds one unreferenced chunk", len(packs)), forgeIndexCache(t.dir, meta, packs)
		})
	}

	// (2) The lying pack, offered to the sealer.
	var ids [][32]byte
	for _, pk := range packs {
		ids = append(ids, pk.ids...)
	}
	name, body := lyingPack(meta, ids, packs[0].name)
	rel := "packs/" + name[:2] + "/" + name
	try("lying-pack", rel, func() (string, error) {
		// Modes as the worker's store makes them (group-readable), so
		// the sealer, which reads through the store's group, can judge it.
		if err := os.MkdirAll(abs("packs/"+name[:2]), 0o750); err != nil {
			return "", fmt.Errorf("shard: %w", err)
		}
		if err := writeSynced(abs(rel), body); err != nil {
			return "", err
		}
		return fmt.Sprintf("trailer claims all %d chunks of the %d packs, garbage at their offsets, name sorts first; %s", len(ids), len(packs), sealWord(rel)), nil
	})

	// (3) Entries of the wrong type, size or count.
	rel = "wip/" + fakeID(1) + ".journal"
	try("journal-fifo", rel, func() (string, error) { return "a FIFO named like a journal", unix.Mkfifo(abs(rel), 0o600) })
	if !first {
		try("index-devzero", "index/index", func() (string, error) {
			if err := os.Remove(abs("index/index")); err != nil && !errors.Is(err, os.ErrNotExist) {
				return "", err
			}
			return "a symlink to /dev/zero", os.Symlink("/dev/zero", abs("index/index"))
		})
	}
	realID := ""
	if snaps, err := os.ReadDir(abs("snapshots")); err == nil {
		for _, e := range snaps {
			if id, ok := strings.CutSuffix(e.Name(), ".snap"); ok && store.ValidSnapshotID(id) && e.Type().IsRegular() {
				realID = id
				break
			}
		}
	}
	if realID == "" {
		realID = fakeID(0)
	}
	rel = "retention/" + realID + ".99.ext"
	try("retention-sparse", rel, func() (string, error) {
		size, err := sparseFile(abs(rel))
		return fmt.Sprintf("a sparse %d GiB file named like a retention record of snapshot %s (append-only directory: never removable)", size>>30, realID), err
	})
	rel = "snapshots/" + fakeID(2) + ".snap"
	try("manifest-symlink", rel, func() (string, error) {
		if err := os.Symlink("/dev/zero", abs(rel)); err != nil {
			return "", err
		}
		return "a symlink to /dev/zero named like a manifest; " + sealWord(rel), nil
	})
	rel = "snapshots/" + fakeID(3) + ".snap"
	try("manifest-fifo", rel, func() (string, error) {
		if err := unix.Mkfifo(abs(rel), 0o600); err != nil {
			return "", err
		}
		return "a FIFO named like a manifest; " + sealWord(rel), nil
	})
	rel = "snapshots/" + fakeID(4) + ".snap"
	try("manifest-garbage", rel, func() (string, error) {
		g := make([]byte, 64<<10)
		_, _ = rand.Read(g)
		if err := writeSynced(abs(rel), g); err != nil {
			return "", err
		}
		return "64 KiB of random bytes named like a manifest; " + sealWord(rel), nil
	})
	rel = "snapshots/" + fakeID(5) + ".snap"
	try("manifest-hardlink", rel, func() (string, error) {
		if err := os.Link(abs("lock"), abs(rel)); err != nil {
			return "", err
		}
		return "a hard link of STORE/lock named like a manifest; " + sealWord(rel), nil
	})
	for _, dir := range []string{"wip", "state", "index"} {
		try("junk-"+dir, dir+"/junk-00000", func() (string, error) {
			n, err := emptyFiles(abs(dir), junkFiles)
			return fmt.Sprintf("%d empty files junk-00000 to junk-%05d", n, n-1), err
		})
	}
	try("clock-log-junk", "state/clock.log", func() (string, error) {
		f, err := os.OpenFile(abs("state/clock.log"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return "", err
		}
		g := make([]byte, 256<<10)
		_, _ = rand.Read(g)
		_, err = f.Write(g)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return "256 KiB of random bytes appended", err
	})
	unix.Sync()
	return nil
}

// writeSynced writes a new file with the mode the worker's store gives
// its files (0640: the sealer reads it through the store's group).
func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	if _, err := io.Copy(f, bytes.NewReader(b)); err != nil {
		f.Close()
		return fmt.Errorf("write: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync: %w", err)
	}
	return f.Close()
}

// sparseFile makes a sparse file of 1 TiB, or of the largest of 16 and 4
// GiB the file system allows, and returns its size.
func sparseFile(path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fmt.Errorf("create: %w", err)
	}
	defer f.Close()
	for _, size := range []int64{1 << 40, 1 << 34, 1 << 32} {
		if err = f.Truncate(size); err == nil {
			return size, nil
		}
	}
	return 0, fmt.Errorf("truncate: %w", err)
}

// emptyFiles creates up to n empty files in dir and returns how many.
func emptyFiles(dir string, n int) (int, error) {
	for i := range n {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("junk-%05d", i)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return i, fmt.Errorf("create: %w", err)
		}
		if err := f.Close(); err != nil {
			return i + 1, fmt.Errorf("close: %w", err)
		}
	}
	return n, nil
}
