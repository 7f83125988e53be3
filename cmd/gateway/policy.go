package main

import (
	"fmt"
	"io"
)

func cmdPolicy(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "gateway policy: not wired yet")
	return 2
}
