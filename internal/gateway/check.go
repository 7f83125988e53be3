package gateway

import (
	"fmt"
	"os"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/listener"
)

// Check validates everything New would, without binding listeners, dialing
// anything or writing anything: identity files and ingress certificates are
// read, routes, normalizers and allowed callers compiled, audit keys read,
// and policy documents loaded and compiled with the gateway's settings, each
// by the function New uses. A Workload API identity is checked without
// dialing (there may be no agent where check runs): that a socket is named,
// by the file or by $SPIFFE_ENDPOINT_SOCKET, and that the SPIFFE ID it asks
// for is in identity.trustDomain. It returns every problem at once, and
// warnings: policy documents that apply to no listener.
func Check(cfg *config.Gateway) (warnings []string, _ error) {
	var errs config.Errors
	add := func(err error) {
		if err == nil {
			return
		}
		if es, ok := config.AsErrors(err); ok {
			errs = append(errs, es...)
			return
		}
		errs = append(errs, config.Error{File: cfg.File, Msg: err.Error()})
	}
	trustDomain := cfg.Identity.TrustDomain
	if f := cfg.Identity.Files; f != nil {
		src, err := identity.NewFiles(identity.FilesOptions{Cert: f.Cert, Key: f.Key, Bundle: f.Bundle, FederatedBundles: f.FederatedBundles})
		if err != nil {
			add(config.Errors{cfg.ErrorFor("identity.files", err)})
		} else {
			add(checkTrustDomain(cfg, src))
			if trustDomain == "" {
				trustDomain = src.Status().ID.TrustDomain().Name()
			}
			src.Close()
		}
	}
	if w := cfg.Identity.WorkloadAPI; w != nil {
		if w.Socket == "" && os.Getenv(workloadapi.SocketEnv) == "" {
			add(config.Errors{cfg.ErrorAt("identity.workloadAPI.socket",
				"no Workload API socket: name one (unix:///path/agent.sock) or set $"+workloadapi.SocketEnv)})
		}
		if id, err := spiffeid.FromString(w.SPIFFEID); err == nil && trustDomain != "" && id.TrustDomain().Name() != trustDomain {
			add(config.Errors{cfg.ErrorAt("identity.trustDomain",
				fmt.Sprintf("identity.workloadAPI.spiffeID %s is not in trust domain %q", id, trustDomain))})
		}
	}
	_, err := compileLive(cfg)
	add(err)
	if in := cfg.Ingress; in != nil {
		store, err := openCertStore(cfg, listener.CertStoreOptions{})
		if err == nil {
			store.Close()
		}
		add(err)
		if m := in.Mesh; m != nil {
			_, err := allowedCallers(cfg, "ingress.mesh.allowedCallers", m.AllowedCallers, trustDomain)
			add(err)
		}
	}
	if e := cfg.Egress; e != nil {
		_, err := allowedCallers(cfg, "egress.allowedCallers", e.AllowedCallers, trustDomain)
		add(err)
	}
	_, err = loadPseudonymize(cfg)
	add(err)
	_, err = loadSigner(cfg)
	add(err)
	add(checkLogins(cfg))
	if len(cfg.Policy.Files) > 0 {
		c := *cfg
		c.Identity.TrustDomain = trustDomain
		compiled, err := CompilePolicies(&c, cfg.Policy.Files, nil)
		add(err)
		if err == nil {
			for _, u := range compiled.Unselected(cfg) {
				warnings = append(warnings, u+": applies to no listener (check its namespace and selector)")
			}
		}
	}
	return warnings, errs.Err()
}
