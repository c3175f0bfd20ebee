//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "holdfast-attack: runs only inside a Linux Holdfast test VM; refusing to run")
	os.Exit(2)
}
