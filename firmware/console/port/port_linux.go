package port

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// DefaultBaud is the speed used when none is given.
const DefaultBaud = 115200

var bauds = map[int]uint32{
	9600: unix.B9600, 19200: unix.B19200, 38400: unix.B38400, 57600: unix.B57600,
	115200: unix.B115200, 230400: unix.B230400, 460800: unix.B460800, 921600: unix.B921600,
}

// Open opens dev: a unix socket (QEMU's serial chardev) is dialled, anything
// else is opened as a serial device and set to raw mode at baud.
func Open(ctx context.Context, dev string, baud int) (io.ReadWriteCloser, error) {
	fi, err := os.Stat(dev)
	if err != nil {
		return nil, fmt.Errorf("console port: %w", err)
	}
	if fi.Mode()&os.ModeSocket != 0 {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", dev)
		if err != nil {
			return nil, fmt.Errorf("console port: %w", err)
		}
		return c, nil
	}
	return OpenTTY(dev, baud)
}

// OpenTTY opens a serial device read-write without making it the
// controlling terminal and puts it in raw mode.
func OpenTTY(dev string, baud int) (*os.File, error) {
	f, err := os.OpenFile(dev, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("console port: %w", err)
	}
	if err := MakeRaw(int(f.Fd()), baud); err != nil {
		f.Close()
		return nil, fmt.Errorf("console port %s: %w", dev, err)
	}
	return f, nil
}

// MakeRaw sets the terminal fd to raw 8N1 at baud (cfmakeraw), ignoring
// modem control lines, with blocking reads of at least one byte.
func MakeRaw(fd, baud int) error {
	if baud == 0 {
		baud = DefaultBaud
	}
	speed, ok := bauds[baud]
	if !ok {
		return fmt.Errorf("unsupported baud rate %d", baud)
	}
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("get termios: %w", err)
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB | unix.CSTOPB | unix.CRTSCTS | unix.CBAUD
	t.Cflag |= unix.CS8 | unix.CREAD | unix.CLOCAL | speed
	t.Ispeed, t.Ospeed = speed, speed
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return fmt.Errorf("set termios: %w", err)
	}
	return nil
}
