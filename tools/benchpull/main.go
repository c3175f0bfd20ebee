// Command benchpull fills a MinIO bucket with the bench-pull data set:
// 8 x 64 MiB, 512 x 1 MiB and 5,000 x 4 KiB objects (1,056 MiB in all) of
// deterministic, incompressible bytes (ChaCha8 seeded by the object's
// index), uploaded with minio-go over 127.0.0.1. With -get-all or -list-all
// it measures this machine's ceilings instead: a bare parallel GET of every
// object to nowhere, and a bare listing. tools/scripts/bench-pull.sh runs
// it; it is not part of the appliance.
//
// Limits: it creates the bucket and only adds objects; it talks plain HTTP
// and is meant for a local test server only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// class is one group of equally sized objects.
type class struct {
	prefix string
	count  int
	size   int64
}

var dataset = []class{
	{"large/", 8, 64 << 20},
	{"medium/", 512, 1 << 20},
	{"small/", 5000, 4 << 10},
}

type object struct {
	key  string
	size int64
	seed uint64
}

func objects() []object {
	var out []object
	seed := uint64(1)
	for _, c := range dataset {
		for i := 0; i < c.count; i++ {
			out = append(out, object{fmt.Sprintf("%s%05d.bin", c.prefix, i), c.size, seed})
			seed++
		}
	}
	return out
}

// chachaReader streams n deterministic bytes.
type chachaReader struct {
	r *rand.ChaCha8
	n int64
}

func (c *chachaReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	c.r.Read(p)
	c.n -= int64(len(p))
	return len(p), nil
}

func main() {
	endpoint := flag.String("endpoint", "", "MinIO host:port")
	bucket := flag.String("bucket", "bench", "bucket to create and fill")
	access := flag.String("access-key", os.Getenv("BENCH_ACCESS_KEY"), "access key")
	secret := flag.String("secret-key", os.Getenv("BENCH_SECRET_KEY"), "secret key (default $BENCH_SECRET_KEY)")
	workers := flag.Int("workers", 8, "parallel uploads")
	printSpec := flag.Bool("print-spec", false, "print the data set description and exit")
	freePort := flag.Bool("free-port", false, "print a free TCP port on 127.0.0.1 and exit")
	wait := flag.Duration("wait", 0, "wait up to this long for the server at -endpoint to be ready, then exit")
	getAll := flag.Bool("get-all", false, "GET every object of -bucket with -workers in parallel, discarding the bytes (the ceiling of a pull), and exit")
	listAll := flag.Bool("list-all", false, "list every object of -bucket (the ceiling of a no-change pull), and exit")
	maildir := flag.Int("maildir", 0, "instead of the bench-pull data set, fill -bucket with this many maildir-shaped objects of 1 to 16 KiB (bench-scale)")
	change := flag.Int("change-every", 0, "with -maildir: rewrite only every Nth object with new bytes (generation -gen)")
	gen := flag.Int("gen", 0, "with -maildir: the bytes' generation (0 is the original data set)")
	flag.Parse()
	switch {
	case *maildir > 0:
		objs := maildirObjects(*maildir, *change, uint64(*gen))
		if err := upload(context.Background(), *endpoint, *bucket, *access, *secret, *workers, objs, *change == 0 && *gen == 0); err != nil {
			fmt.Fprintf(os.Stderr, "benchpull: %v\n", err)
			os.Exit(1)
		}
		return
	case *getAll || *listAll:
		if err := ceiling(context.Background(), *endpoint, *bucket, *access, *secret, *workers, *getAll); err != nil {
			fmt.Fprintf(os.Stderr, "benchpull: %v\n", err)
			os.Exit(1)
		}
		return
	case *freePort:
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintf(os.Stderr, "benchpull: %v\n", err)
			os.Exit(1)
		}
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
		l.Close()
		return
	case *wait > 0:
		if err := waitReady(*endpoint, *wait); err != nil {
			fmt.Fprintf(os.Stderr, "benchpull: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if *printSpec {
		for _, c := range dataset {
			fmt.Printf("%d x %d bytes under %s\n", c.count, c.size, c.prefix)
		}
		return
	}
	if err := run(context.Background(), *endpoint, *bucket, *access, *secret, *workers); err != nil {
		fmt.Fprintf(os.Stderr, "benchpull: %v\n", err)
		os.Exit(1)
	}
}

// waitReady polls MinIO's readiness endpoint.
func waitReady(endpoint string, d time.Duration) error {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	deadline := time.Now().Add(d)
	for {
		resp, err := hc.Get("http://" + endpoint + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s (last error: %v)", endpoint, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func client(endpoint, access, secret string, workers int) (*minio.Client, error) {
	if endpoint == "" {
		return nil, errors.New("-endpoint is required")
	}
	return minio.New(endpoint, &minio.Options{
		Creds: credentials.NewStaticV4(access, secret, ""), Region: "us-east-1",
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: workers},
	})
}

// ceiling lists the bucket and, with get, GETs every object with workers
// in parallel into io.Discard: the least work any pull of the bucket can
// do on this machine. It prints what it read.
func ceiling(ctx context.Context, endpoint, bucket, access, secret string, workers int, get bool) error {
	cl, err := client(endpoint, access, secret, workers)
	if err != nil {
		return err
	}
	keys := make(chan string, 1024)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total int64
	var firstErr error
	if get {
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range keys {
					o, err := cl.GetObject(ctx, bucket, k, minio.GetObjectOptions{})
					var n int64
					if err == nil {
						n, err = io.Copy(io.Discard, o)
						o.Close()
					}
					mu.Lock()
					total += n
					if err != nil && firstErr == nil {
						firstErr = fmt.Errorf("get %s: %w", k, err)
					}
					mu.Unlock()
				}
			}()
		}
	}
	count := 0
	for o := range cl.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			close(keys)
			wg.Wait()
			return fmt.Errorf("list %s: %w", bucket, o.Err)
		}
		count++
		if get {
			keys <- o.Key
		}
	}
	close(keys)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	fmt.Printf("listed %d objects, read %d bytes\n", count, total)
	return nil
}

// maildirObjects is bench-scale's data set: n objects of 1 to 16 KiB
// under keys shaped like a mail server's maildirs (1,000 mails a user),
// every one its own bytes; with every > 0 only each every-th of them. gen
// changes the bytes and keeps the keys and sizes.
func maildirObjects(n, every int, gen uint64) []object {
	var out []object
	for i := 0; i < n; i++ {
		if every > 0 && i%every != every/2 {
			continue
		}
		r := rand.New(rand.NewPCG(uint64(i), 0x6d61696c))
		size := 1024 + r.Int64N(15*1024+1)
		key := fmt.Sprintf("user%06d/Maildir/cur/%d.M%dP%d.mx1.example.net,S=%d:2,S", i/1000, 1700000000+i*37, r.IntN(1_000_000), 1000+r.IntN(60000), size)
		out = append(out, object{key: key, size: size, seed: uint64(i)<<8 | gen&0xff})
	}
	return out
}

func run(ctx context.Context, endpoint, bucket, access, secret string, workers int) error {
	return upload(ctx, endpoint, bucket, access, secret, workers, objects(), true)
}

// upload puts objs into bucket with workers in parallel; create makes the
// bucket first.
func upload(ctx context.Context, endpoint, bucket, access, secret string, workers int, objs []object, create bool) error {
	cl, err := client(endpoint, access, secret, workers)
	if err != nil {
		return err
	}
	if create {
		if err := cl.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
			return fmt.Errorf("make bucket %s: %w", bucket, err)
		}
	}
	work := make(chan object)
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range work {
				var seed [32]byte
				for i := range 8 {
					seed[i] = byte(o.seed >> (8 * i))
				}
				seed[8] = 0xbe
				r := &chachaReader{r: rand.NewChaCha8(seed), n: o.size}
				// One part per object: its ETag is the MD5 the pull checks.
				if _, err := cl.PutObject(ctx, bucket, o.key, r, o.size, minio.PutObjectOptions{PartSize: 128 << 20}); err != nil {
					errc <- fmt.Errorf("put %s: %w", o.key, err)
					return
				}
			}
		}()
	}
	var total int64
	for _, o := range objs {
		select {
		case work <- o:
			total += o.size
		case err := <-errc:
			close(work)
			wg.Wait()
			return err
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}
	fmt.Printf("uploaded %d objects, %d bytes\n", len(objs), total)
	return nil
}
