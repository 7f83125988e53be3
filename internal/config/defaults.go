package config

import "time"

// Defaults, in one place. The README's configuration reference lists the same values.
const (
	DefaultIngressListen          = ":8443"
	DefaultAdminListen            = "127.0.0.1:9901"
	DefaultReadHeaderTimeout      = 10 * time.Second
	DefaultReadTimeout            = 60 * time.Second
	DefaultWriteTimeout           = 0 // unlimited: streamed responses and WebSockets outlive any fixed bound
	DefaultIdleTimeout            = 120 * time.Second
	DefaultUpstreamTimeout        = 30 * time.Second
	DefaultDialTimeout            = 5 * time.Second
	DefaultMaxHeaderBytes         = 64 << 10
	DefaultMaxHeaderCount         = 100
	DefaultShutdownTimeout        = 30 * time.Second
	DefaultShutdownDelay          = 5 * time.Second
	DefaultWorkloadWaitTimeout    = 30 * time.Second
	DefaultPolicyPollInterval     = 2 * time.Second
	DefaultNormalizationMode      = "MERGE_SLASHES"
	DefaultEscapedSlashes         = "REJECT_REQUEST"
	DefaultPathParameters         = "REJECT_EXCEPT_LAST"
	DefaultHeadersWithUnderscores = "REJECT_REQUEST"
	DefaultMisdirectedRequests    = "REJECT"
	DefaultRootNamespace          = "istio-system"
)

// ApplyDefaults fills every unset field with its default.
func (g *Gateway) ApplyDefaults() {
	if g.ShutdownTimeout == 0 {
		g.ShutdownTimeout = DefaultShutdownTimeout
	}
	if g.ShutdownDelay == 0 && !g.written("shutdownDelay") {
		g.ShutdownDelay = DefaultShutdownDelay
	}
	if g.Admin.Listen == "" {
		g.Admin.Listen = DefaultAdminListen
	}
	if w := g.Identity.WorkloadAPI; w != nil && w.WaitTimeout == 0 {
		w.WaitTimeout = DefaultWorkloadWaitTimeout
	}
	if g.Policy.RootNamespace == "" {
		g.Policy.RootNamespace = DefaultRootNamespace
	}
	if g.Policy.PollInterval == 0 {
		g.Policy.PollInterval = DefaultPolicyPollInterval
	}
	g.oidcDefaults()
	if g.Egress != nil {
		g.Egress.applyDefaults()
	}
	if len(g.Audit.Sinks) == 0 {
		g.Audit.Sinks = []AuditSink{{Stdout: true}}
	}
	if g.Audit.FailureMode == "" {
		g.Audit.FailureMode = AuditFailOpen
	}
	if j := g.Audit.Journal; j != nil {
		if j.SegmentBytes == 0 {
			j.SegmentBytes = 64 << 20
		}
		if j.SegmentAge == 0 {
			j.SegmentAge = time.Hour
		}
		if j.MaxBytes == 0 {
			j.MaxBytes = 1 << 30
		}
		if j.OnFull == "" {
			j.OnFull = "dropOldest"
		}
		if j.SyncInterval == 0 {
			j.SyncInterval = 10 * time.Millisecond
		}
		if j.DecisionDelay == nil {
			d := time.Millisecond
			j.DecisionDelay = &d
		}
		if j.DecisionSiblings == 0 {
			j.DecisionSiblings = 16
		}
		if j.CheckpointEvery == 0 {
			j.CheckpointEvery = 10000
		}
		if j.CheckpointInterval == 0 {
			j.CheckpointInterval = time.Minute
		}
	}
	in := g.Ingress
	if in == nil {
		return
	}
	if in.Listen == "" {
		in.Listen = DefaultIngressListen
	}
	if in.Labels == nil {
		in.Labels = map[string]string{"tollgate.dev/listener": "ingress"}
	}
	in.Timeouts.applyDefaults()
	in.Limits.applyDefaults()
	in.Normalization.applyDefaults()
	if in.HeadersWithUnderscores == "" {
		in.HeadersWithUnderscores = DefaultHeadersWithUnderscores
	}
	if in.MisdirectedRequests == "" {
		in.MisdirectedRequests = DefaultMisdirectedRequests
	}
	if m := in.Mesh; m != nil && m.Namespace == "" {
		m.Namespace = in.Namespace
	}
	if m := in.Mesh; m != nil && m.Labels == nil {
		m.Labels = map[string]string{"tollgate.dev/listener": "mesh"}
	}
	for i := range in.Routes {
		r := &in.Routes[i]
		if r.PathPrefix == "" {
			r.PathPrefix = "/"
		}
		if r.Upstream.Timeout == 0 {
			r.Upstream.Timeout = in.Timeouts.Upstream
		}
	}
}

// written reports whether path was set in the file, so that an explicit zero
// ("shutdownDelay: 0s") is kept rather than taken for unset.
func (g *Gateway) written(path string) bool {
	return g.pos != nil && g.pos.Has(path)
}

// applyDefaults fills the unset timeouts of a listener and its outbound leg;
// every front's listener takes the same defaults.
func (t *Timeouts) applyDefaults() {
	if t.ReadHeader == 0 {
		t.ReadHeader = DefaultReadHeaderTimeout
	}
	if t.Read == 0 {
		t.Read = DefaultReadTimeout
	}
	if t.Idle == 0 {
		t.Idle = DefaultIdleTimeout
	}
	if t.Upstream == 0 {
		t.Upstream = DefaultUpstreamTimeout
	}
	if t.Dial == 0 {
		t.Dial = DefaultDialTimeout
	}
}

// applyDefaults fills the unset limits of a listener.
func (l *Limits) applyDefaults() {
	if l.MaxHeaderBytes == 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxHeaderCount == 0 {
		l.MaxHeaderCount = DefaultMaxHeaderCount
	}
}

// applyDefaults fills a front's unset normalization settings.
func (n *Normalization) applyDefaults() {
	if n.Mode == "" {
		n.Mode = DefaultNormalizationMode
	}
	if n.EscapedSlashes == "" {
		n.EscapedSlashes = DefaultEscapedSlashes
	}
	if n.PathParameters == "" {
		n.PathParameters = DefaultPathParameters
	}
}
