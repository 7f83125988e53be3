package gateway

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"reflect"
	"strings"
	"time"

	"tollgate.dev/tollgate/internal/audit"
	"tollgate.dev/tollgate/internal/config"
)

// The audit pipeline of a gateway: the sinks, the journal and the Logger,
// built from the audit section of the configuration.

// loadPseudonymize reads audit.pseudonymize's key; nil without the section.
func loadPseudonymize(cfg *config.Gateway) (*audit.Pseudonymize, error) {
	ps := cfg.Audit.Pseudonymize
	if ps == nil {
		return nil, nil
	}
	p, err := audit.LoadPseudonymize(ps.KeyFile, ps.Fields)
	if err != nil {
		return nil, config.Errors{cfg.ErrorFor("audit.pseudonymize", err)}
	}
	return p, nil
}

// loadSigner reads the audit journal's signing key; nil without one.
func loadSigner(cfg *config.Gateway) (*audit.Signer, error) {
	jc := cfg.Audit.Journal
	if jc == nil || jc.SigningKey == "" {
		return nil, nil
	}
	signer, err := audit.LoadSigner(jc.SigningKey)
	if err != nil {
		return nil, config.Errors{cfg.ErrorFor("audit.journal.signingKey", err)}
	}
	return signer, nil
}

// openAudit builds the audit Logger: the sinks, the journal when one is
// configured, pseudonyms. An error names the configuration field at fault.
func (g *Gateway) openAudit() error {
	product := g.auditProduct()
	var sinks []audit.Sink
	var names []string
	var formats []audit.Format
	for i, s := range g.cfg.Audit.Sinks {
		names = append(names, s.SinkName())
		formats = append(formats, audit.Format(s.Format))
		sk, field, err := g.openSink(s, product)
		if err != nil {
			return config.Errors{g.cfg.ErrorFor(fmt.Sprintf("audit.sinks[%d].%s", i, field), err)}
		}
		sinks = append(sinks, sk)
	}
	cfg := audit.Config{Sinks: sinks, SinkNames: names, SinkFormats: formats, Product: product, Log: g.log, Instance: g.cfg.Audit.Instance,
		FailClosed: g.cfg.Audit.FailureMode == config.AuditFailClosed}
	p, err := loadPseudonymize(g.cfg)
	if err != nil {
		return err
	}
	cfg.Pseudonymize = p
	if jc := g.cfg.Audit.Journal; jc != nil {
		jo := audit.JournalOptions{Dir: jc.Dir, SegmentBytes: jc.SegmentBytes, SegmentAge: jc.SegmentAge,
			MaxBytes: jc.MaxBytes, OnFull: audit.OnFull(jc.OnFull), SyncInterval: jc.SyncInterval,
			CheckpointEvery: jc.CheckpointEvery, CheckpointInterval: jc.CheckpointInterval, Log: g.log,
			DecisionDelay: decisionDelay(jc.DecisionDelay), DecisionSiblings: jc.DecisionSiblings}
		signer, err := loadSigner(g.cfg)
		if err != nil {
			return err
		}
		jo.Signer = signer
		j, err := audit.OpenJournal(jo)
		if err != nil {
			return config.Errors{g.cfg.ErrorFor("audit.journal.dir", err)}
		}
		cfg.Journal = j
	}
	l, err := audit.New(cfg)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	g.audit = l
	return nil
}

// auditProduct names the gateway in formatted records.
func (g *Gateway) auditProduct() audit.Product {
	product := audit.DefaultProduct
	product.Version = cmp.Or(g.opts.Version, product.Version)
	return product
}

// reloadAudit prepares the audit section of next over prev's, prev being
// the configuration in force and next the candidate of a reload (liveConfig's
// copy, which it changes: the audit fields that wait for a restart are set
// back to prev's, as liveConfig does for the other restart fields, so that
// next describes what is in force once committed). restart lists those fields:
// "audit.journal" (any of its settings), and "audit.sinks" and
// "audit.failureMode" when the journal is added or removed (what they need or
// allow depends on it). Everything else applies live:
//
//   - sinks, by name (config.AuditSink.SinkName): one whose settings are
//     unchanged keeps running untouched (its connection, journal cursor and
//     delivery loop); a changed one is replaced (with a journal, from the same
//     cursor); an added one starts from now; a removed one stops (with a
//     journal, once it has delivered what was committed, at most the drain
//     timeout) and is closed; its cursor file stays;
//   - pseudonymize, instance and failureMode, for the records recorded from
//     then on.
//
// err is a positioned configuration problem (a new sink that can't be
// opened, a pseudonym key that can't be read); nothing is left open then.
// Otherwise commit puts the new audit settings in force, between two records
// (call it under the reload lock once every other part of the reload
// succeeded), and abort closes what was opened for them (call it if the
// reload fails elsewhere). All four are nil when nothing in audit changed
// or nothing of it applies live.
func (g *Gateway) reloadAudit(prev, next *config.Gateway) (restart []string, commit func(), abort func(), err error) {
	was, now := &prev.Audit, &next.Audit
	if reflect.DeepEqual(*was, *now) {
		return nil, nil, nil, nil
	}
	if !reflect.DeepEqual(was.Journal, now.Journal) {
		restart = append(restart, "audit.journal")
		if (was.Journal == nil) != (now.Journal == nil) {
			if !reflect.DeepEqual(was.Sinks, now.Sinks) {
				restart = append(restart, "audit.sinks")
				now.Sinks = was.Sinks
			}
			if was.FailureMode != now.FailureMode {
				restart = append(restart, "audit.failureMode")
				now.FailureMode = was.FailureMode
			}
		}
		now.Journal = was.Journal
	}
	if g.audit == nil || reflect.DeepEqual(*was, *now) {
		return restart, nil, nil, nil
	}
	var sets []func()
	if !reflect.DeepEqual(was.Pseudonymize, now.Pseudonymize) {
		p, err := loadPseudonymize(next)
		if err != nil {
			return nil, nil, nil, err
		}
		sets = append(sets, func() { g.audit.SetPseudonymize(p) })
	}
	if was.Instance != now.Instance {
		instance := now.Instance
		sets = append(sets, func() { g.audit.SetInstance(instance) })
	}
	if was.FailureMode != now.FailureMode {
		closed := now.FailureMode == config.AuditFailClosed
		sets = append(sets, func() {
			if err := g.audit.SetFailClosed(closed); err != nil {
				// Unreachable: validation ties closed to a journal, and
				// the journal's presence did not change.
				g.log.Error("audit failure mode not changed", "err", err)
			}
		})
	}
	var change *audit.SinkChange
	if !reflect.DeepEqual(was.Sinks, now.Sinks) {
		if change, err = g.prepareSinks(was.Sinks, next); err != nil {
			return nil, nil, nil, err
		}
	}
	commit = func() {
		change.Commit()
		for _, set := range sets {
			set()
		}
	}
	return restart, commit, change.Abort, nil
}

// prepareSinks opens the sinks of next that are new or changed against
// was (by name) and prepares the Logger's change to next's set.
func (g *Gateway) prepareSinks(was []config.AuditSink, next *config.Gateway) (*audit.SinkChange, error) {
	running := map[string]config.AuditSink{}
	for _, s := range was {
		running[s.SinkName()] = s
	}
	product := g.auditProduct()
	var specs []audit.SinkSpec
	var opened []audit.Sink
	var errs config.Errors
	for i, s := range next.Audit.Sinks {
		name := s.SinkName()
		if old, ok := running[name]; ok && reflect.DeepEqual(old, s) {
			specs = append(specs, audit.SinkSpec{Name: name})
			continue
		}
		sk, field, err := g.openSink(s, product)
		if err != nil {
			errs = append(errs, next.ErrorFor(fmt.Sprintf("audit.sinks[%d].%s", i, field), err))
			continue
		}
		opened = append(opened, sk)
		specs = append(specs, audit.SinkSpec{Name: name, Sink: sk, Format: audit.Format(s.Format)})
	}
	err := errs.Err()
	var change *audit.SinkChange
	if err == nil {
		if change, err = g.audit.PrepareSinks(specs); err != nil {
			err = config.Errors{next.ErrorFor("audit.sinks", err)}
		}
	}
	if err != nil {
		for _, sk := range opened {
			_ = sk.Close()
		}
		return nil, err
	}
	return change, nil
}

// openSink builds one configured sink; field names the configuration key
// an error is about.
func (g *Gateway) openSink(s config.AuditSink, product audit.Product) (sink audit.Sink, field string, err error) {
	switch {
	case s.Stdout:
		return audit.NewWriterSink(g.opts.Stdout), "stdout", nil
	case s.File != "":
		f, err := audit.OpenFile(s.File)
		if err != nil {
			return nil, "file", err
		}
		return f, "file", nil
	case s.Syslog != nil:
		sk, err := syslogSink(*s.Syslog)
		return sk, "syslog", err
	case s.Webhook != nil:
		sk, err := webhookSink(*s.Webhook)
		return sk, "webhook", err
	case s.OTLP != nil:
		sk, err := otlpSink(*s.OTLP, product)
		return sk, "otlp", err
	case s.HEC != nil:
		sk, err := hecSink(*s.HEC)
		return sk, "hec", err
	}
	return nil, "", errors.New("no sink kind set") // config validation prevents it
}

// sinkTLS is the TLS client config of a network sink: caFile's roots (the
// system's when empty), TLS 1.2 at least.
func sinkTLS(caFile, serverName string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no PEM certificates in %s", caFile)
		}
	}
	return tc, nil
}

// syslogSink builds the TLS client of a syslog receiver from its files.
func syslogSink(c config.AuditSyslog) (*audit.SyslogSink, error) {
	host, _, _ := net.SplitHostPort(c.Address)
	tc, err := sinkTLS(c.CAFile, cmp.Or(c.ServerName, host))
	if err != nil {
		return nil, err
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return audit.NewSyslogSink(audit.SyslogOptions{Address: c.Address, TLS: tc, Hostname: c.Hostname})
}

// httpSinkClient is the HTTP client of a webhook or HEC sink.
func httpSinkClient(caFile string) (*http.Client, error) {
	tc, err := sinkTLS(caFile, "")
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.Proxy = nil // audit records go straight to the SIEM
	return &http.Client{Transport: tr}, nil
}

// readToken reads a secret from a file, without surrounding whitespace.
func readToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s is empty", file)
	}
	return tok, nil
}

// bearer is the Authorization header of a token file; none without one.
func bearer(tokenFile string) (http.Header, error) {
	if tokenFile == "" {
		return nil, nil
	}
	tok, err := readToken(tokenFile)
	if err != nil {
		return nil, err
	}
	return http.Header{"Authorization": {"Bearer " + tok}}, nil
}

// webhookClient is the client and Authorization header of a webhook or
// OTLP sink.
func webhookClient(c config.AuditWebhook) (*http.Client, http.Header, error) {
	client, err := httpSinkClient(c.CAFile)
	if err != nil {
		return nil, nil, err
	}
	h, err := bearer(c.TokenFile)
	return client, h, err
}

func webhookSink(c config.AuditWebhook) (*audit.WebhookSink, error) {
	client, h, err := webhookClient(c)
	if err != nil {
		return nil, err
	}
	return audit.NewWebhookSink(audit.WebhookOptions{URL: c.URL, Client: client, Header: h})
}

func otlpSink(c config.AuditWebhook, p audit.Product) (*audit.OTLPSink, error) {
	client, h, err := webhookClient(c)
	if err != nil {
		return nil, err
	}
	return audit.NewOTLPSink(audit.OTLPOptions{URL: c.URL, Client: client, Product: p, Header: h})
}

func hecSink(c config.AuditHEC) (*audit.HECSink, error) {
	client, err := httpSinkClient(c.CAFile)
	if err != nil {
		return nil, err
	}
	tok, err := readToken(c.TokenFile)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	return audit.NewHECSink(audit.HECOptions{URL: c.URL, Token: tok, Client: client, Index: c.Index, Source: c.Source,
		Sourcetype: c.Sourcetype, Host: host, Ack: c.Ack})
}

// decisionDelay maps audit.journal.decisionDelay to the journal's: unset is
// its default, 0s never waits.
func decisionDelay(d *time.Duration) time.Duration {
	switch {
	case d == nil:
		return 0
	case *d == 0:
		return -1
	}
	return *d
}
