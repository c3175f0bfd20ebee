// Package testminio starts a real MinIO server for tests: the pinned binary
// that `make setup` builds into ${XDG_CACHE_HOME:-~/.cache}/holdfast/bin,
// listening on 127.0.0.1 on a free port with a temporary data directory,
// stopped when the test ends. It is imported only by tests.
//
// A missing binary fails the test (it is never skipped): run `make setup`.
package testminio

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Root credentials of every test server.
const (
	AccessKey = "holdfast-test"
	SecretKey = "holdfast-test-secret"
)

// Server is a running MinIO.
type Server struct {
	Endpoint string // 127.0.0.1:port
	Client   *minio.Client
	Core     minio.Core
}

// Binary returns the path of the MinIO binary setup builds.
func Binary() string {
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "holdfast", "bin", "minio")
}

// lockedBuffer collects the server's output for failure messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Start starts a MinIO server for t and stops it in t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("MinIO binary %s is missing (%v): run `make setup`, which builds the pinned MinIO once with go install", bin, err)
	}
	data := t.TempDir()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := start(t, bin, data)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("start MinIO: %v", lastErr)
	return nil
}

func start(t testing.TB, bin, data string) (*Server, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	cport, err := FreePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	out := &lockedBuffer{}
	cmd := exec.Command(bin, "server", "--quiet", "--address", addr,
		"--console-address", "127.0.0.1:"+strconv.Itoa(cport), data)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+AccessKey, "MINIO_ROOT_PASSWORD="+SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=on")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	for {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("minio exited early (%v); output:\n%s", err, out.String())
		default:
		}
		resp, err := hc.Get("http://" + addr + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("minio not ready at %s after 60s; output:\n%s", addr, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("minio output:\n%s", out.String())
		}
	})
	cl, err := minio.New(addr, &minio.Options{
		Creds:     credentials.NewStaticV4(AccessKey, SecretKey, ""),
		Transport: &http.Transport{Proxy: nil},
		Region:    "us-east-1",
		// Uploads with x-amz-checksum-* need trailing headers.
		TrailingHeaders: true,
	})
	if err != nil {
		return nil, err
	}
	return &Server{Endpoint: addr, Client: cl, Core: minio.Core{Client: cl}}, nil
}

// MakeBucket creates a bucket, with versioning when versioned is set.
func (s *Server) MakeBucket(t testing.TB, name string, versioned bool) {
	t.Helper()
	ctx := context.Background()
	if err := s.Client.MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket %s: %v", name, err)
	}
	if versioned {
		if err := s.Client.EnableVersioning(ctx, name); err != nil {
			t.Fatalf("enable versioning on %s: %v", name, err)
		}
	}
}

// Put uploads data as key and returns the upload's info.
func (s *Server) Put(t testing.TB, bucket, key string, data []byte, opts minio.PutObjectOptions) minio.UploadInfo {
	t.Helper()
	info, err := s.Client.PutObject(context.Background(), bucket, key, bytes.NewReader(data), int64(len(data)), opts)
	if err != nil {
		t.Fatalf("put %q: %v", key, err)
	}
	return info
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
