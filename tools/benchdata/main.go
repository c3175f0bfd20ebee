// Command benchdata writes the deterministic data set that
// tools/scripts/bench-store.sh measures: a few large files, some medium ones
// and many small ones, filled from a seeded ChaCha8 stream so the bytes are
// incompressible and identical on every machine and run.
//
// Every file has its own stream (seed, file number), so files can be written
// in parallel and one file's content does not depend on the others. No two
// files share content: the store's deduplication gets no help.
//
// It writes into OUT.tmp and renames that to OUT when complete, so an
// interrupted run never leaves a partial data set under the final name.
package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
)

// spec describes a data set.
type spec struct {
	Seed                   uint64
	Large, Medium, Small   int
	LargeSize, MediumSize  int64
	SmallSize, SmallPerDir int64
}

// file is one file to write: its path below the root and its size.
type file struct {
	rel  string
	size int64
	n    uint64 // file number, mixed into the stream's key
}

func (s spec) files() []file {
	var fs []file
	n := uint64(0)
	add := func(rel string, size int64) {
		fs = append(fs, file{rel: rel, size: size, n: n})
		n++
	}
	for i := 0; i < s.Large; i++ {
		add(fmt.Sprintf("large/large-%02d.bin", i), s.LargeSize)
	}
	for i := 0; i < s.Medium; i++ {
		add(fmt.Sprintf("medium/medium-%04d.bin", i), s.MediumSize)
	}
	per := s.SmallPerDir
	if per <= 0 {
		per = 256
	}
	for i := 0; i < s.Small; i++ {
		add(fmt.Sprintf("small/%03d/small-%05d.bin", int64(i)/per, i), s.SmallSize)
	}
	return fs
}

// total returns the number of bytes in the data set.
func (s spec) total() int64 {
	return int64(s.Large)*s.LargeSize + int64(s.Medium)*s.MediumSize + int64(s.Small)*s.SmallSize
}

// stream returns the deterministic content of file n.
func stream(seed, n uint64) io.Reader {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], seed)
	binary.LittleEndian.PutUint64(key[8:], n)
	copy(key[16:], "holdfast-bench")
	return rand.NewChaCha8(key)
}

func writeFile(root string, f file, seed uint64) error {
	path := filepath.Join(root, f.rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(out, 1<<20)
	if _, err := io.CopyN(w, stream(seed, f.n), f.size); err != nil {
		out.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := w.Flush(); err != nil {
		out.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return out.Close()
}

// generate writes the data set into dir, which must not exist.
func generate(dir string, s spec, workers int) error {
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("%s exists; remove it first", dir)
	}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	if workers < 1 {
		workers = 1
	}
	files := s.files()
	jobs := make(chan file)
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range jobs {
				if err := writeFile(tmp, f, s.Seed); err != nil {
					errc <- err
					for range jobs { // drain
					}
					return
				}
			}
		}()
	}
	for _, f := range files {
		jobs <- f
	}
	close(jobs)
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

func main() {
	var s spec
	out := flag.String("out", "", "directory to create (must not exist)")
	flag.Uint64Var(&s.Seed, "seed", 1, "seed of the content streams")
	flag.IntVar(&s.Large, "large", 4, "number of large files")
	flag.Int64Var(&s.LargeSize, "large-size", 128<<20, "size of a large file in bytes")
	flag.IntVar(&s.Medium, "medium", 256, "number of medium files")
	flag.Int64Var(&s.MediumSize, "medium-size", 1<<20, "size of a medium file in bytes")
	flag.IntVar(&s.Small, "small", 16384, "number of small files")
	flag.Int64Var(&s.SmallSize, "small-size", 4<<10, "size of a small file in bytes")
	flag.Int64Var(&s.SmallPerDir, "small-per-dir", 256, "small files per directory")
	workers := flag.Int("workers", runtime.GOMAXPROCS(0), "files written in parallel")
	printSpec := flag.Bool("print-spec", false, "print the data set's description and exit")
	flag.Parse()
	if *printSpec {
		fmt.Printf("benchdata v1 seed=%d large=%dx%d medium=%dx%d small=%dx%d per-dir=%d total=%d\n",
			s.Seed, s.Large, s.LargeSize, s.Medium, s.MediumSize, s.Small, s.SmallSize, s.SmallPerDir, s.total())
		return
	}
	if *out == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: benchdata -out DIR [flags]")
		os.Exit(2)
	}
	if s.Large < 0 || s.Medium < 0 || s.Small < 0 || s.LargeSize < 0 || s.MediumSize < 0 || s.SmallSize < 0 {
		fmt.Fprintln(os.Stderr, "benchdata: counts and sizes must not be negative")
		os.Exit(2)
	}
	if err := generate(*out, s, *workers); err != nil {
		fmt.Fprintf(os.Stderr, "benchdata: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %d files, %d bytes, into %s\n", len(s.files()), s.total(), *out)
}
