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
	"strings"

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
	product := audit.DefaultProduct
	product.Version = cmp.Or(g.opts.Version, product.Version)
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
			CheckpointEvery: jc.CheckpointEvery, CheckpointInterval: jc.CheckpointInterval, Log: g.log}
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
		g.files = append(g.files, f)
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
