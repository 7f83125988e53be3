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
	"time"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/gateway"
	"tollgate.dev/tollgate/internal/oplog"
	"tollgate.dev/tollgate/internal/telemetry"
)

// logFlags are the logging flags every serving command has.
type logFlags struct {
	level  string
	format string
}

var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"text", "json"}
)

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.level, "log-level", "", "log level: "+orList(logLevels)+" (default $"+envLogLevel+", else info)")
	fs.StringVar(&l.format, "log-format", "", "log format: "+orList(logFormats)+" (default $"+envLogFormat+", else text)")
}

// resolve fills what the flags left unset from the environment, then the
// defaults, and checks both values.
func (l *logFlags) resolve(getenv func(string) string) error {
	var levelSrc, formatSrc string
	if l.level == "" {
		l.level, levelSrc = getenv(envLogLevel), envLogLevel
		if l.level == "" {
			l.level, levelSrc = "info", ""
		}
	}
	if l.format == "" {
		l.format, formatSrc = getenv(envLogFormat), envLogFormat
		if l.format == "" {
			l.format, formatSrc = "text", ""
		}
	}
	if err := choice("log-level", l.level, levelSrc, logLevels...); err != nil {
		return err
	}
	return choice("log-format", l.format, formatSrc, logFormats...)
}

// varyingLogKeys are attributes that differ on every request. The log's rate
// limiter compares records without them, so that a failing upstream under
// load writes a burst and then a line per interval, not one per request.
var varyingLogKeys = []string{"requestId", "seq", "remote"}

// logger returns the operational log, writing to w through a queue that never
// blocks the request path (internal/oplog). Close its handler with flushLog.
func (l *logFlags) logger(w io.Writer) (*slog.Logger, *oplog.Handler, error) {
	if err := l.resolve(os.Getenv); err != nil {
		return nil, nil, err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, nil, fmt.Errorf("invalid -log-level %q: want %s", l.level, orList(logLevels))
	}
	h, err := oplog.New(w, oplog.Options{Format: l.format, Level: level, VaryingKeys: varyingLogKeys})
	if err != nil {
		return nil, nil, err
	}
	return slog.New(h), h, nil
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
	c := newCommand("check", "check -c gateway.yaml\n\nValidates everything run would, without binding or dialing anything, and prints every\nproblem as file:line:col: field: problem (exit 1), or one line that says what is configured.", stdout, stderr)
	cfg, warnings, exit, ok := c.loadGatewayFile(args)
	if !ok {
		return exit
	}
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning: "+w)
	}
	fmt.Fprintln(stdout, gateway.Summary(cfg))
	return 0
}

// loadGatewayFile is check's and config's start: parse args (-c only), then
// load and check the gateway file, printing its problems (exit 1).
func (c *command) loadGatewayFile(args []string) (*config.Gateway, []string, int, bool) {
	var cf configFlag
	cf.register(c)
	if exit, ok := c.parse(args); !ok {
		return nil, nil, exit, false
	}
	file, exit, ok := cf.resolve(c, os.Getenv)
	if !ok {
		return nil, nil, exit, false
	}
	cfg, warnings, err := loadChecked(file, os.Getenv)
	if err != nil {
		printConfigErrors(c.stderr, err)
		return nil, nil, 1, false
	}
	return cfg, warnings, 0, true
}

// loadChecked loads the gateway file and runs every check run makes before
// starting anything: `gateway check` and `gateway run` both call it, so they
// refuse the same files with the same lines. TOLLGATE_ADMIN_LISTEN replaces
// admin.listen.
func loadChecked(file string, getenv func(string) string) (*config.Gateway, []string, error) {
	cfg, err := config.Load(file)
	if cfg == nil {
		return nil, nil, err
	}
	if a := getenv(envAdminListen); a != "" {
		cfg.Admin.Listen = a
	}
	warnings, cerr := gateway.Check(cfg)
	if err := config.Combine(err, cerr); err != nil {
		return nil, nil, err
	}
	return cfg, warnings, nil
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	c := newCommand("run", "run -c gateway.yaml\n\nServes until SIGTERM or SIGINT (then turns readiness false, keeps serving for shutdownDelay, and drains in-flight requests for shutdownTimeout; a second signal exits at once); the gateway file and the policies reload when they change, and on SIGHUP, which also reloads certificates and reopens audit files.\n\nEnvironment (a flag wins over its variable, a variable over the file): "+envConfig+", "+envLogLevel+", "+envLogFormat+", "+envAdminListen+" (replaces admin.listen).", stdout, stderr)
	var cf configFlag
	cf.register(c)
	var lf logFlags
	lf.register(c.FlagSet)
	if exit, ok := c.parse(args); !ok {
		return exit
	}
	file, exit, ok := cf.resolve(c, os.Getenv)
	if !ok {
		return exit
	}
	sigs, log, err := lf.startServing(stderr)
	if err != nil {
		return c.fail("%v", err)
	}
	defer sigs.stop()
	cfg, _, err := loadChecked(file, os.Getenv)
	if err != nil {
		printConfigErrors(stderr, err)
		return 1
	}
	gcPercent, procs := tuneRuntime(os.Getenv, cfg.Audit.Journal != nil)
	log.Debug("runtime", "gcPercent", gcPercent, "gomaxprocs", procs)
	defer releaseWhenIdle()()
	gw, err := gateway.New(sigs.ctx, cfg, gateway.Options{Logger: log, Stdout: os.Stdout, LogStats: sigs.logStats, Version: buildVersion().Version,
		AdminListen: os.Getenv(envAdminListen)})
	if err != nil {
		sigs.flushLog()
		printConfigErrors(stderr, err)
		return 1
	}
	if err := gw.Start(); err != nil {
		shutdownWithin(cfg.ShutdownTimeout, gw.Shutdown)
		sigs.flushLog() // what New and Start logged comes before the reason
		fmt.Fprintln(stderr, startError(cfg, err))
		return 1
	}
	sigs.serve(log, gw.Reload)
	// The shutdown timings apply live: the file in force says them.
	cfg = gw.Config()
	if d := cfg.ShutdownDelay; d > 0 {
		// Readiness false first, listeners open: a load balancer that polls
		// readiness stops sending before connections are refused. A second
		// signal ends the wait (and the process) at once.
		gw.Drain()
		log.Info("shutting down: readiness is false; listeners keep serving for shutdownDelay", "shutdownDelay", d)
		time.Sleep(d)
	}
	log.Info("shutting down: draining in-flight requests", "deadline", cfg.ShutdownTimeout)
	if err := shutdownWithin(cfg.ShutdownTimeout, gw.Shutdown); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// startError is the one line run prints when Start fails. A listener that
// could not be bound is reported at the field that sets its address, in the
// shape of config errors.
func startError(cfg *config.Gateway, err error) string {
	var le *gateway.ListenError
	switch {
	case !errors.As(err, &le):
		return "gateway run: cannot start: " + err.Error()
	case errors.Is(err, syscall.EADDRINUSE):
		return cfg.ErrorAt(le.Field, le.Addr+" is already in use (is another gateway running? choose a free address)").Error()
	}
	return cfg.ErrorAt(le.Field, "cannot listen on "+le.Addr+": "+le.Err.Error()).Error()
}

// serveSignals is how the serving commands (run, dev) answer signals, and
// the operational log they write.
type serveSignals struct {
	// ctx is done at the first SIGTERM or SIGINT.
	ctx    context.Context
	cancel context.CancelFunc
	hup    chan os.Signal
	log    *oplog.Handler
}

// startServing installs the serving commands' signal handlers, then opens
// their operational log. stop flushes the log and removes the handlers.
func (l *logFlags) startServing(stderr io.Writer) (*serveSignals, *slog.Logger, error) {
	s := notifyServeSignals()
	log, h, err := l.logger(stderr)
	if err != nil {
		s.stop()
		return nil, nil, err
	}
	s.log = h
	return s, log, nil
}

// logStats maps the operational log's counters for /metrics.
func (s *serveSignals) logStats() telemetry.LogStats {
	st := s.log.Stats()
	return telemetry.LogStats{Written: st.Written, Dropped: st.Dropped, Suppressed: st.Suppressed, WriteErrors: st.WriteErrors}
}

// flushLog writes what the log has queued, for at most logFlushTimeout: a
// stalled stderr reader must not hold the exit.
func (s *serveSignals) flushLog() {
	if s.log == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), logFlushTimeout)
	defer cancel()
	s.log.Close(ctx)
}

// notifyServeSignals installs the handlers before anything is served, so an
// early SIGHUP (a reload right after start) cannot kill the process.
func notifyServeSignals() *serveSignals {
	// A write to a broken stdout or stderr (journald restarted, the log
	// shipper or the terminal's pager died) raises SIGPIPE, which kills a Go
	// program unless it handles it, and systemd's default counts that death
	// as a clean exit: the gateway would not be restarted. Ignored, the write
	// fails with EPIPE instead, which the audit logger and the operational
	// log count, and the gateway keeps serving.
	signal.Ignore(syscall.SIGPIPE)
	s := &serveSignals{hup: make(chan os.Signal, 1)}
	s.ctx, s.cancel = signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	signal.Notify(s.hup, syscall.SIGHUP)
	return s
}

// serve reloads on every SIGHUP (a nil reload: nothing to do) until the
// first SIGTERM or SIGINT. Then it stops catching those, so that a second one
// ends the process at once.
func (s *serveSignals) serve(log *slog.Logger, reload func() error) {
	for {
		select {
		case <-s.hup:
			if reload == nil {
				continue
			}
			if err := reload(); err != nil {
				for _, p := range problems(err) {
					log.Error("reload incomplete", "err", p)
				}
			} else {
				log.Info("reloaded")
			}
		case <-s.ctx.Done():
			s.cancel()
			return
		}
	}
}

// problems are err's problems, one per line of the log: each of a joined
// error's, and each of a configuration's.
func problems(err error) []string {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, problems(e)...)
		}
		return out
	}
	if es, ok := config.AsErrors(err); ok {
		out := make([]string, len(es))
		for i, e := range es {
			out[i] = e.Error()
		}
		return out
	}
	return []string{err.Error()}
}

func (s *serveSignals) stop() {
	s.flushLog()
	s.cancel()
	signal.Stop(s.hup)
}

// shutdownGrace is how long past its deadline Shutdown may take before the
// process exits without it.
const shutdownGrace = time.Second

// shutdownWithin calls shutdown with a deadline of timeout and returns within
// timeout+shutdownGrace whatever shutdown does: a stalled stdout reader holds
// the audit sink's write, and nothing may hold the exit beyond shutdownTimeout.
// Running out of the deadline itself (requests cut off) is not an error.
func shutdownWithin(timeout time.Duration, shutdown func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- shutdown(ctx) }()
	watchdog := time.NewTimer(timeout + shutdownGrace)
	defer watchdog.Stop()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return nil
	case <-watchdog.C:
		return fmt.Errorf("shutdown did not finish within shutdownTimeout %v (+%v): exiting without it (a stalled audit sink or stdout reader?)", timeout, shutdownGrace)
	}
}

// logFlushTimeout bounds the wait for the operational log's last lines.
const logFlushTimeout = time.Second
