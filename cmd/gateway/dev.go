package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"tollgate.dev/tollgate/internal/identity"

	"tollgate.dev/tollgate/internal/dev"
)

func cmdDev(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "pki":
			return cmdDevPKI(args[1:], stdout, stderr)
		case "echo":
			return cmdDevEcho(args[1:], stderr)
		}
	}
	fs := newFlagSet("dev", "dev [flags]\n\nRuns a complete gateway with a dev trust domain, a demo mTLS upstream and a demo policy.\nNothing is needed from you; files go to -dir. Ctrl-C stops it.\n\n  gateway dev pki -out DIR     write a throwaway CA, SVIDs and a localhost certificate (for examples/quickstart)\n  gateway dev echo ...         run the demo mTLS echo upstream with SVID files", stderr)
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

func cmdDevPKI(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("dev pki", "dev pki -out DIR [-trust-domain TD]\n\nWrites a throwaway CA (ca.crt, also the SPIFFE bundle), SVIDs for the gateway\n(gateway.crt/key) and a demo upstream (echo.crt/key), and a localhost server\ncertificate (tls.crt/key). Keys are written 0600. For trying Tollgate only.", stderr)
	out := fs.String("out", "", "directory to write (required)")
	td := fs.String("trust-domain", "example.org", "trust domain of the SVIDs")
	ttl := fs.Duration("ttl", 30*24*time.Hour, "lifetime of the certificates")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	ids := map[string]string{
		"gateway": "spiffe://" + *td + "/ns/tollgate/sa/gateway",
		"echo":    "spiffe://" + *td + "/ns/demo/sa/echo",
	}
	p, err := dev.WritePKI(*out, *td, *ttl, ids)
	if err != nil {
		fmt.Fprintf(stderr, "gateway dev pki: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s: ca.crt, gateway.crt/key (%s), echo.crt/key (%s), tls.crt/key (localhost)\n", p.Dir, ids["gateway"], ids["echo"])
	return 0
}

func cmdDevEcho(args []string, stderr io.Writer) int {
	fs := newFlagSet("dev echo", "dev echo (-cert F -key F -bundle F | -workload-api SOCKET [-spiffe-id ID]) -allow SPIFFE-ID [-listen ADDR]\n\nServes the demo upstream over mTLS: it accepts only callers whose SPIFFE ID\nmatches -allow and answers JSON describing each request. Its SVID comes from\nfiles, or from a SPIFFE Workload API (a SPIRE agent) with -workload-api.", stderr)
	listen := fs.String("listen", "127.0.0.1:9443", "address")
	cert := fs.String("cert", "", "SVID certificate file")
	key := fs.String("key", "", "SVID key file")
	bundle := fs.String("bundle", "", "trust bundle file")
	socket := fs.String("workload-api", "", "Workload API socket (unix:///path/agent.sock) to take the SVID from, instead of -cert/-key/-bundle")
	spiffeID := fs.String("spiffe-id", "", "with -workload-api: which of the issued SVIDs to serve (default: the first)")
	allow := fs.String("allow", "", "SPIFFE ID pattern of allowed callers (spiffe://td/path, spiffe://td, spiffe://td/path/*)")
	var lf logFlags
	lf.register(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	files := *cert != "" || *key != "" || *bundle != ""
	switch {
	case *allow == "" || fs.NArg() > 0,
		*socket == "" && (*cert == "" || *key == "" || *bundle == ""),
		*socket != "" && files,
		*spiffeID != "" && *socket == "":
		fs.Usage()
		return 2
	}
	log, err := lf.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	allowed, err := identity.ParseMatcher([]string{*allow})
	if err != nil {
		fmt.Fprintf(stderr, "gateway dev echo: -allow: %v\n", err)
		return 2
	}
	var src identity.Source
	if *socket != "" {
		ctx, cancel := context.WithTimeout(context.Background(), identity.DefaultWaitTimeout)
		src, err = identity.NewWorkloadAPI(ctx, identity.WorkloadOptions{Socket: *socket, SPIFFEID: *spiffeID})
		cancel()
	} else {
		src, err = identity.NewFiles(identity.FilesOptions{Cert: *cert, Key: *key, Bundle: *bundle})
	}
	if err != nil {
		fmt.Fprintf(stderr, "gateway dev echo: %v\n", err)
		return 1
	}
	defer src.Close()
	e, err := dev.StartEcho(*listen, src, allowed, log)
	if err != nil {
		fmt.Fprintf(stderr, "gateway dev echo: %v\n", err)
		return 1
	}
	defer e.Close()
	log.Info("echo upstream serving", "addr", e.Addr(), "spiffeID", src.Status().ID.String(), "allow", *allow)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
	return 0
}
