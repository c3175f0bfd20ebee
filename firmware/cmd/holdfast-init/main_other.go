//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "holdfast-init runs only as PID 1 of a Linux appliance")
	os.Exit(1)
}
