package tpm

import (
	"net"

	"github.com/google/go-tpm/tpm2/transport"
)

// StreamTransport exposes the stream transport so tests can wrap it (e.g.
// to record the bus).
func StreamTransport(c net.Conn) transport.TPMCloser { return &streamTransport{conn: c} }
