package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"tollgate.dev/tollgate/internal/dev"
)

func cmdDev(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("dev", "dev [flags]\n\nRuns a complete gateway with a dev trust domain, a demo mTLS upstream and a demo policy.\nNothing is needed from you; files go to -dir. Ctrl-C stops it.", stderr)
	dir := fs.String("dir", ".tollgate-dev", "directory for the dev CA certificate and the demo policy")
	listen := fs.String("listen", "127.0.0.1:8443", "ingress address")
	admin := fs.String("admin", "127.0.0.1:9901", "admin address (health, readiness, metrics)")
	var lf logFlags
	lf.register(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := lf.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err = dev.Run(ctx, dev.Options{Dir: *dir, Listen: *listen, Admin: *admin, Logger: log, Out: stderr, Audit: stdout})
	if err != nil {
		fmt.Fprintf(stderr, "gateway dev: %v\n", err)
		return 1
	}
	fmt.Fprintln(stderr, "stopped")
	return 0
}
