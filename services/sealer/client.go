package sealer

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
)

// Client asks a sealer process to seal store files. It implements the
// store's Sealer interface and is safe for concurrent use.
type Client struct {
	mu   sync.Mutex
	conn io.ReadWriter
	root string
}

// NewClient returns a client for the store at root speaking over conn.
func NewClient(conn io.ReadWriter, root string) *Client {
	return &Client{conn: conn, root: filepath.Clean(root)}
}

// SealFile asks for FS_IMMUTABLE_FL on path.
func (c *Client) SealFile(path string) error { return c.do(OpSealFile, path) }

// SealDir asks for FS_APPEND_FL on a directory (or the clock log).
func (c *Client) SealDir(path string) error { return c.do(OpAppendDir, path) }

func (c *Client) do(op byte, path string) error {
	rel, err := filepath.Rel(c.root, filepath.Clean(path))
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("seal %s: outside the store %s: %w", path, c.root, ErrRefused)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := writeMsg(c.conn, op, filepath.ToSlash(rel)); err != nil {
		return fmt.Errorf("seal %s: send: %w", path, err)
	}
	status, msg, err := readMsg(c.conn)
	if err != nil {
		return fmt.Errorf("seal %s: reply: %w", path, err)
	}
	if status != 0 {
		return fmt.Errorf("seal %s: %s: %w", path, msg, ErrRefused)
	}
	return nil
}
