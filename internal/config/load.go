package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
)

// Load reads, decodes, defaults and validates a gateway configuration file. It
// returns every problem at once as Errors; nil Gateway means nothing usable.
func Load(file string) (*Gateway, error) {
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, Errors{{File: file, Msg: "cannot read: " + unwrapPathError(err).Error()}}
	}
	return Parse(file, src)
}

// Parse is Load on bytes already read; file names the source in errors and is the
// directory that relative paths in the configuration are resolved against.
func Parse(file string, src []byte) (*Gateway, error) {
	docs, err := ParseDocuments(file, src)
	if err != nil {
		return nil, err
	}
	if len(docs) != 1 {
		return nil, Errors{{File: file, Line: 1, Col: 1, Msg: "want exactly one Gateway document"}}
	}
	d := NewDecoder(file)
	g := &Gateway{File: file}
	d.Decode(docs[0], "", g)
	if g.APIVersion != APIVersion {
		d.Errorf("apiVersion", "must be %q (got %q)", APIVersion, g.APIVersion)
	}
	if g.Kind != KindGateway {
		d.Errorf("kind", "must be %q (got %q)", KindGateway, g.Kind)
	}
	// Every problem in one run: an unknown field must not hide an
	// invalid value elsewhere. Only what validation would say again of a
	// field that failed to decode (left unset, so "required") is dropped.
	decoded := len(d.Errs)
	g.pos = d // before defaults: a value written as 0 is not unset
	g.ApplyDefaults()
	g.resolvePaths(filepath.Dir(file))
	v := &validator{d: d, g: g}
	v.validate()
	d.Errs = append(d.Errs[:decoded], withoutFieldsOf(d.Errs[decoded:], d.Errs[:decoded])...)
	if err := d.Errs.Err(); err != nil {
		return g, err
	}
	return g, nil
}

// withoutFieldsOf returns the errors of errs that are not about a field of
// failed, or a field inside one.
func withoutFieldsOf(errs, failed Errors) Errors {
	var out Errors
	for _, e := range errs {
		keep := true
		for _, f := range failed {
			if f.Path != "" && within(e.Path, f.Path) {
				keep = false
				break
			}
		}
		if keep {
			out = append(out, e)
		}
	}
	return out
}

// ErrorAt returns a positioned error for a field path of this configuration, for
// problems found after loading (for example while compiling).
func (g *Gateway) ErrorAt(path, msg string) Error {
	if g.pos == nil {
		return Error{File: g.File, Path: path, Msg: msg}
	}
	p := g.pos.Pos(path)
	return Error{File: g.File, Line: p.Line, Col: p.Col, Path: path, Msg: msg}
}

// SameSettings reports whether g and o hold the same settings, wherever in
// their files they were written.
func (g *Gateway) SameSettings(o *Gateway) bool {
	a, b := *g, *o
	a.pos, b.pos = nil, nil
	return reflect.DeepEqual(a, b)
}

// ErrorFor is ErrorAt with err's text as the problem and err as its cause.
func (g *Gateway) ErrorFor(path string, err error) Error {
	e := g.ErrorAt(path, err.Error())
	e.Err = err
	return e
}

// AsErrors flattens err into Errors when it is one.
func AsErrors(err error) (Errors, bool) {
	var es Errors
	if errors.As(err, &es) {
		return es, true
	}
	return nil, false
}

// resolvePaths makes file paths relative to the configuration file's directory.
func (g *Gateway) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if f := g.Identity.Files; f != nil {
		abs(&f.Cert)
		abs(&f.Key)
		abs(&f.Bundle)
		for td, p := range f.FederatedBundles {
			abs(&p)
			f.FederatedBundles[td] = p
		}
	}
	if g.Ingress != nil {
		for i := range g.Ingress.TLS.Certificates {
			abs(&g.Ingress.TLS.Certificates[i].Cert)
			abs(&g.Ingress.TLS.Certificates[i].Key)
		}
	}
	for i := range g.Audit.Sinks {
		abs(&g.Audit.Sinks[i].File)
		if sl := g.Audit.Sinks[i].Syslog; sl != nil {
			abs(&sl.CAFile)
			abs(&sl.CertFile)
			abs(&sl.KeyFile)
		}
		for _, w := range []*AuditWebhook{g.Audit.Sinks[i].Webhook, g.Audit.Sinks[i].OTLP} {
			if w != nil {
				abs(&w.CAFile)
				abs(&w.TokenFile)
			}
		}
		if h := g.Audit.Sinks[i].HEC; h != nil {
			abs(&h.CAFile)
			abs(&h.TokenFile)
		}
	}
	if g.Audit.Pseudonymize != nil {
		abs(&g.Audit.Pseudonymize.KeyFile)
	}
	if g.Audit.Journal != nil {
		abs(&g.Audit.Journal.Dir)
		abs(&g.Audit.Journal.SigningKey)
	}
	if e := g.Egress; e != nil {
		for i := range e.Credentials {
			c := &e.Credentials[i]
			for j := range c.Headers {
				abs(&c.Headers[j].File)
			}
			if c.OAuth2 != nil {
				abs(&c.OAuth2.ClientSecretFile)
			}
		}
	}
	for i := range g.Policy.Files {
		abs(&g.Policy.Files[i])
	}
	g.resolveOIDCPaths(abs)
}
