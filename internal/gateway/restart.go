package gateway

import (
	"reflect"
	"time"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/listener"
)

// restartField is one setting of the gateway file that changed but applies
// only at the next start.
type restartField struct {
	path string
	// get returns the field's value in cfg; set writes v into cfg.
	get func(c *config.Gateway) any
	set func(c *config.Gateway, v any)
}

// restartFields are the settings a running gateway cannot change: its
// listeners (address, TLS, timeouts, who may call), its identity source,
// and egress credentials and resolvers; the limits a listener can't change
// are found by keepFixedLimits, and the audit journal's settings by
// reloadAudit. Everything else (routes, upstreams, their SPIFFE IDs and
// timeouts, normalization, trusted proxies, header rules, limits, listener
// labels and namespaces, audit sinks, OIDC providers and sessions, policy
// settings, trust domain aliases, the shutdown timings) applies live.
var restartFields = []restartField{
	field("identity.trustDomain", func(c *config.Gateway) *string { return &c.Identity.TrustDomain }),
	field("identity.workloadAPI", func(c *config.Gateway) **config.WorkloadAPI { return &c.Identity.WorkloadAPI }),
	field("identity.files", func(c *config.Gateway) **config.IdentityFiles { return &c.Identity.Files }),
	field("admin", func(c *config.Gateway) *config.Admin { return &c.Admin }),
	ingressField("ingress.listen", func(in *config.Ingress) *string { return &in.Listen }),
	ingressField("ingress.tls", func(in *config.Ingress) *config.ServerTLS { return &in.TLS }),
	ingressField("ingress.timeouts.readHeader", func(in *config.Ingress) *time.Duration { return &in.Timeouts.ReadHeader }),
	ingressField("ingress.timeouts.read", func(in *config.Ingress) *time.Duration { return &in.Timeouts.Read }),
	ingressField("ingress.timeouts.write", func(in *config.Ingress) *time.Duration { return &in.Timeouts.Write }),
	ingressField("ingress.timeouts.idle", func(in *config.Ingress) *time.Duration { return &in.Timeouts.Idle }),
	ingressField("ingress.mesh", func(in *config.Ingress) **config.MeshListener { return &in.Mesh }),
	egressField("egress.listen", func(e *config.Egress) *string { return &e.Listen }),
	egressField("egress.allowedCallers", func(e *config.Egress) *[]string { return &e.AllowedCallers }),
	egressField("egress.timeouts", func(e *config.Egress) *config.Timeouts { return &e.Timeouts }),
	egressField("egress.allowCIDRs", func(e *config.Egress) *[]string { return &e.AllowCIDRs }),
	egressField("egress.credentials", func(e *config.Egress) *[]config.EgressCredential { return &e.Credentials }),
	egressField("egress.outboundTrafficPolicy", func(e *config.Egress) *config.OutboundTrafficPolicy { return &e.OutboundTrafficPolicy }),
	egressField("egress.resolvers", func(e *config.Egress) *[]string { return &e.Resolvers }),
	egressField("egress.resolverTimeout", func(e *config.Egress) *time.Duration { return &e.ResolverTimeout }),
	egressField("egress.auditQueryValues", func(e *config.Egress) *[]string { return &e.AuditQueryValues }),
}

func field[T any](path string, at func(*config.Gateway) *T) restartField {
	return restartField{path: path,
		get: func(c *config.Gateway) any { return *at(c) },
		set: func(c *config.Gateway, v any) { *at(c) = v.(T) },
	}
}

// ingressField and egressField are fields of a section that both files
// have (a section added or removed is a restart of its own).
func ingressField[T any](path string, at func(*config.Ingress) *T) restartField {
	return restartField{path: path,
		get: func(c *config.Gateway) any {
			if c.Ingress == nil {
				return nil
			}
			return *at(c.Ingress)
		},
		set: func(c *config.Gateway, v any) { *at(c.Ingress) = v.(T) },
	}
}

func egressField[T any](path string, at func(*config.Egress) *T) restartField {
	return restartField{path: path,
		get: func(c *config.Gateway) any {
			if c.Egress == nil {
				return nil
			}
			return *at(c.Egress)
		},
		set: func(c *config.Gateway, v any) { *at(c.Egress) = v.(T) },
	}
}

// frontLimits are the limits of the front named name under cfg.
func frontLimits(cfg *config.Gateway, name string) listener.Limits {
	l := frontConfigIn(cfg, name).limits
	return listener.Limits{MaxHeaderBytes: l.MaxHeaderBytes, MaxHeaderCount: l.MaxHeaderCount,
		MaxConnections: l.MaxConnections, MaxConnectionsPerSource: l.MaxConnectionsPerSource}
}

// keepFixedLimits keeps at cur's value, in cand, the limits a running
// listener can't change (listener.Server.NotApplicable), and returns their
// fields for the restart list.
func (g *Gateway) keepFixedLimits(cur, cand *config.Gateway) []string {
	var restart []string
	for _, f := range g.fronts {
		if f.server == nil {
			continue
		}
		var section string
		var was, now *config.Limits
		switch f.name {
		case "ingress":
			section, was, now = "ingress", &cur.Ingress.Limits, &cand.Ingress.Limits
		case "egress":
			section, was, now = "egress", &cur.Egress.Limits, &cand.Egress.Limits
		default:
			continue // the mesh listener shares the ingress's limits
		}
		for _, field := range f.server.NotApplicable(frontLimits(cand, f.name)) {
			switch field {
			case "MaxHeaderBytes":
				restart = append(restart, section+".limits.maxHeaderBytes")
				now.MaxHeaderBytes = was.MaxHeaderBytes
			case "MaxConnections":
				restart = append(restart, section+".limits.maxConnections")
				now.MaxConnections, now.MaxConnectionsPerSource = was.MaxConnections, was.MaxConnectionsPerSource
			}
		}
	}
	return restart
}

// setLimits puts cfg's limits in force on every listener.
func (g *Gateway) setLimits(cfg *config.Gateway) {
	for _, f := range g.fronts {
		if f.server != nil {
			f.server.SetLimits(frontLimits(cfg, f.name))
		}
	}
}

// liveConfig returns what of next can go in force over cur: next, with every
// restart field that differs kept at cur's value, and those fields' paths.
// next is not modified.
func liveConfig(cur, next *config.Gateway) (*config.Gateway, []string) {
	cand := *next
	var restart []string
	// A section added or removed is a listener started or stopped.
	if (cur.Ingress == nil) != (next.Ingress == nil) {
		restart = append(restart, "ingress")
		cand.Ingress = cur.Ingress
	} else if next.Ingress != nil {
		in := *next.Ingress
		cand.Ingress = &in
	}
	if (cur.Egress == nil) != (next.Egress == nil) {
		restart = append(restart, "egress")
		cand.Egress = cur.Egress
	} else if next.Egress != nil {
		e := *next.Egress
		cand.Egress = &e
	}
	for _, f := range restartFields {
		if was, now := f.get(cur), f.get(&cand); !reflect.DeepEqual(was, now) {
			restart = append(restart, f.path)
			f.set(&cand, was)
		}
	}
	return &cand, restart
}
