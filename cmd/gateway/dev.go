package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"tollgate.dev/tollgate/internal/dev"
	"tollgate.dev/tollgate/internal/gateway"
	"tollgate.dev/tollgate/internal/identity"
)

func cmdDev(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "pki":
			return cmdDevPKI(args[1:], stdout, stderr)
		case "echo":
			return cmdDevEcho(args[1:], stdout, stderr)
		}
	}
	fs := newCommand("dev", "dev [flags]\n\nRuns a complete gateway with a dev trust domain, a demo mTLS upstream and a demo policy,\nand an egress listener with a demo external API and a workload SVID for curl.\nNothing is needed from you; files go to -dir. SIGHUP reloads the policy at once; Ctrl-C stops it.\n\n  gateway dev pki -out DIR     write a throwaway CA, SVIDs and a localhost certificate (for examples/)\n  gateway dev echo ...         run the demo mTLS echo upstream with SVID files", stdout, stderr)
	dir := fs.String("dir", ".tollgate-dev", "directory for the dev CA certificate, the curl workload's SVID and the demo policies")
	listen := fs.String("listen", "127.0.0.1:8443", "ingress address")
	admin := fs.String("admin", "127.0.0.1:9901", "admin address (health, readiness, metrics)")
	egress := fs.String("egress", "127.0.0.1:15443", "egress address (mTLS proxy for workloads)")
	var lf logFlags
	lf.register(fs.FlagSet)
	if exit, ok := fs.parse(args); !ok {
		return exit
	}
	if exit, ok := fs.noArgs(); !ok {
		return exit
	}
	sigs, log, err := lf.startServing(stderr)
	if err != nil {
		return fs.fail("%v", err)
	}
	defer sigs.stop()
	gcPercent, procs := tuneRuntime(os.Getenv, false)
	log.Debug("runtime", "gcPercent", gcPercent, "gomaxprocs", procs)
	defer releaseWhenIdle()()
	env, err := dev.Start(sigs.ctx, dev.Options{Dir: *dir, Listen: *listen, Admin: *admin, Egress: *egress, Logger: log, Out: stderr, Audit: stdout, LogStats: sigs.logStats})
	if err != nil {
		sigs.flushLog()
		fmt.Fprintln(stderr, devStartError(err))
		return 1
	}
	sigs.serve(log, env.Gateway.Reload)
	log.Info("shutting down: draining in-flight requests", "deadline", devShutdownTimeout)
	if err := shutdownWithin(devShutdownTimeout, env.Close); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// devShutdownTimeout is dev mode's shutdownTimeout.
const devShutdownTimeout = 10 * time.Second

// devStartError is the one line dev prints when it cannot start; an address
// in use names the flag that picks another.
func devStartError(err error) string {
	var le *gateway.ListenError
	if !errors.As(err, &le) || !errors.Is(err, syscall.EADDRINUSE) {
		return "gateway dev: " + err.Error()
	}
	flag, ok := devListenFlags[le.Field]
	if !ok {
		return "gateway dev: " + le.Addr + " is already in use (is another gateway running?)"
	}
	return fmt.Sprintf("gateway dev: %s is already in use (is another gateway running?): choose another address with %s (%s 127.0.0.1:0 picks a free port)", le.Addr, flag, flag)
}

// devListenFlags are the flags of dev that set each listen address.
var devListenFlags = map[string]string{"ingress.listen": "-listen", "admin.listen": "-admin", "egress.listen": "-egress"}

func cmdDevPKI(args []string, stdout, stderr io.Writer) int {
	fs := newCommand("dev pki", "dev pki -out DIR [-trust-domain TD]\n\nWrites a throwaway CA (ca.crt, also the SPIFFE bundle), SVIDs for the gateway\n(gateway.crt/key), a demo upstream (echo.crt/key) and a workload calling out\nthrough the egress listener (runner.crt/key), and a localhost server\ncertificate (tls.crt/key). Keys are written 0600. For trying Tollgate only.", stdout, stderr)
	out := fs.String("out", "", "directory to write (required)")
	td := fs.String("trust-domain", "example.org", "trust domain of the SVIDs")
	ttl := fs.Duration("ttl", 30*24*time.Hour, "lifetime of the certificates")
	if exit, ok := fs.parse(args); !ok {
		return exit
	}
	if exit, ok := fs.noArgs(); !ok {
		return exit
	}
	if *out == "" {
		return fs.fail("-out is required: name the directory to write")
	}
	ids := map[string]string{
		"gateway": "spiffe://" + *td + "/ns/tollgate/sa/gateway",
		"echo":    "spiffe://" + *td + "/ns/demo/sa/echo",
		"runner":  "spiffe://" + *td + "/ns/ci/sa/runner",
	}
	p, err := dev.WritePKI(*out, *td, *ttl, ids)
	if err != nil {
		fmt.Fprintf(stderr, "gateway dev pki: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s: ca.crt, gateway.crt/key (%s), echo.crt/key (%s), runner.crt/key (%s), tls.crt/key (localhost)\n",
		p.Dir, ids["gateway"], ids["echo"], ids["runner"])
	return 0
}

func cmdDevEcho(args []string, stdout, stderr io.Writer) int {
	fs := newCommand("dev echo", "dev echo (-cert F -key F -bundle F | -workload-api SOCKET [-spiffe-id ID]) -allow SPIFFE-ID [-listen ADDR]\n\nServes the demo upstream over mTLS: it accepts only callers whose SPIFFE ID\nmatches -allow and answers JSON describing each request. Its SVID comes from\nfiles, or from a SPIFFE Workload API (a SPIRE agent) with -workload-api.", stdout, stderr)
	listen := fs.String("listen", "127.0.0.1:9443", "address")
	cert := fs.String("cert", "", "SVID certificate file")
	key := fs.String("key", "", "SVID key file")
	bundle := fs.String("bundle", "", "trust bundle file")
	socket := fs.String("workload-api", "", "Workload API socket (unix:///path/agent.sock) to take the SVID from, instead of -cert/-key/-bundle")
	spiffeID := fs.String("spiffe-id", "", "with -workload-api: which of the issued SVIDs to serve (default: the first)")
	allow := fs.String("allow", "", "SPIFFE ID pattern of allowed callers (spiffe://td/path, spiffe://td, spiffe://td/path/*)")
	var lf logFlags
	lf.register(fs.FlagSet)
	if exit, ok := fs.parse(args); !ok {
		return exit
	}
	if exit, ok := fs.noArgs(); !ok {
		return exit
	}
	files := *cert != "" || *key != "" || *bundle != ""
	switch {
	case *allow == "":
		return fs.fail("-allow is required: the SPIFFE ID pattern of allowed callers")
	case *socket != "" && files:
		return fs.fail("-workload-api and -cert/-key/-bundle exclude each other")
	case *socket == "" && (*cert == "" || *key == "" || *bundle == ""):
		return fs.fail("-cert, -key and -bundle are required together (or -workload-api)")
	case *spiffeID != "" && *socket == "":
		return fs.fail("-spiffe-id needs -workload-api")
	}
	sigs, log, err := lf.startServing(stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	defer sigs.stop()
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
	sigs.serve(log, nil) // its SVID files are polled: SIGHUP has nothing to add
	return 0
}
