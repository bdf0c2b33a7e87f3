//go:build !linux

// Command bench needs Linux: it reads /proc and watches files with inotify.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "bench: needs Linux (/proc and inotify)")
	os.Exit(1)
}
