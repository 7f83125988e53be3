package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/gateway"
)

// logFlags are the logging flags every serving command has.
type logFlags struct {
	level  string
	format string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&l.format, "log-format", "text", "log format: text or json")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("invalid -log-level %q", l.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("invalid -log-format %q (want text or json)", l.format)
}

func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: gateway %s\n\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// printConfigErrors prints every configuration problem, one per line.
func printConfigErrors(w io.Writer, err error) {
	if es, ok := config.AsErrors(err); ok {
		for _, e := range es {
			fmt.Fprintln(w, e.Error())
		}
		return
	}
	fmt.Fprintln(w, err)
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("check", "check -c gateway.yaml\n\nValidates everything run would and prints every problem as file:line:col: field: problem.", stderr)
	file := fs.String("c", "", "configuration file (required)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	cfg, err := config.Load(*file)
	var warnings []string
	if err == nil {
		warnings, err = gateway.Check(cfg)
	}
	if err != nil {
		printConfigErrors(stderr, err)
		return 1
	}
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning: "+w)
	}
	fmt.Fprintln(stdout, gateway.Summary(cfg))
	return 0
}

func cmdRun(args []string, stderr io.Writer) int {
	fs := newFlagSet("run", "run -c gateway.yaml\n\nServes until SIGTERM or SIGINT (then drains in-flight requests); SIGHUP reloads certificates, policies and audit files.", stderr)
	file := fs.String("c", "", "configuration file (required)")
	var lf logFlags
	lf.register(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	log, err := lf.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	cfg, err := config.Load(*file)
	if err != nil {
		printConfigErrors(stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	gw, err := gateway.New(ctx, cfg, gateway.Options{Logger: log, Stdout: os.Stdout})
	if err != nil {
		printConfigErrors(stderr, err)
		return 1
	}
	if err := gw.Start(); err != nil {
		log.Error("cannot start", "err", err)
		gw.Shutdown(context.Background())
		return 1
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			if err := gw.Reload(); err != nil {
				log.Error("reload incomplete", "err", err)
			} else {
				log.Info("reloaded")
			}
			continue
		case <-ctx.Done():
		}
		break
	}
	stop()
	log.Info("shutting down: draining in-flight requests", "deadline", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := gw.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Error("shutdown", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}
