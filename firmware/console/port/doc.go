// Package port opens the byte stream the console protocol runs on: a serial
// device put into raw mode (no echo, no line editing, no CR/LF translation,
// 8N1 at the given speed) or the unix socket QEMU exposes for a VM's serial
// line.
//
// Limits: Linux only (termios through golang.org/x/sys/unix); only the
// common baud rates are supported; no hardware flow control.
package port
