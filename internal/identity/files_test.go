package identity_test

import (
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/identity/identitytest"
)

// svidFiles writes an SVID, its key and a bundle into dir as PEM.
type svidFiles struct {
	dir                   string
	cert, key, bundle, fb string
}

func writeSVIDFiles(t *testing.T, svid *x509svid.SVID, bundlePEM []byte) svidFiles {
	t.Helper()
	dir := t.TempDir()
	f := svidFiles{
		dir:    dir,
		cert:   filepath.Join(dir, "svid.pem"),
		key:    filepath.Join(dir, "svid_key.pem"),
		bundle: filepath.Join(dir, "bundle.pem"),
		fb:     filepath.Join(dir, "partner.pem"),
	}
	f.writeSVID(t, svid)
	writeFile(t, f.bundle, bundlePEM)
	return f
}

func (f svidFiles) writeSVID(t *testing.T, svid *x509svid.SVID) {
	t.Helper()
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, f.key, keyPEM)
	writeFile(t, f.cert, certPEM)
}

// writeFile replaces path atomically, as spiffe-helper and kubelet do.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// reloads collects OnReload calls.
type reloads struct {
	mu   sync.Mutex
	errs []error
}

func (r *reloads) record(err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

func (r *reloads) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.errs)
}

func (r *reloads) last() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errs[len(r.errs)-1]
}

func TestFilesReload(t *testing.T) {
	ca := identitytest.NewCA(t, "example.org")
	partner := identitytest.NewCA(t, "partner.example")
	svid1 := identitytest.SVID(t, ca, gatewayID)
	files := writeSVIDFiles(t, svid1, ca.RootPEM())
	writeFile(t, files.fb, partner.RootPEM())
	var rl reloads
	src, err := identity.NewFiles(identity.FilesOptions{
		Cert: files.cert, Key: files.key, Bundle: files.bundle,
		FederatedBundles: map[string]string{"partner.example": files.fb},
		PollInterval:     20 * time.Millisecond,
		OnReload:         rl.record,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	serial := func() string { return src.Status().Serial }
	if got, want := serial(), svid1.Certificates[0].SerialNumber.Text(16); got != want {
		t.Fatalf("serial %s, want %s", got, want)
	}
	if _, err := src.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("partner.example")); err != nil {
		t.Errorf("federated bundle: %v", err)
	}
	if err := src.Ready(); err != nil {
		t.Errorf("Ready = %v", err)
	}

	// Unchanged files: no reload attempts.
	time.Sleep(100 * time.Millisecond)
	if n := rl.count(); n != 0 {
		t.Fatalf("%d reloads of unchanged files", n)
	}

	// A valid new SVID is picked up.
	svid2 := identitytest.SVID(t, ca, gatewayID)
	files.writeSVID(t, svid2)
	eventually(t, "reload of new SVID", func() bool { return serial() == svid2.Certificates[0].SerialNumber.Text(16) })
	eventually(t, "OnReload(nil)", func() bool { return rl.count() > 0 && rl.last() == nil })

	// Invalid new material keeps the old SVID and is reported.
	bad := []struct {
		name    string
		write   func()
		wantErr string
	}{
		{
			name:    "garbage cert",
			write:   func() { writeFile(t, files.cert, []byte("not pem")) },
			wantErr: "svid.pem",
		},
		{
			name: "key of another SVID",
			write: func() {
				_, otherKey, _ := identitytest.SVID(t, ca, gatewayID).Marshal()
				certPEM, _, _ := svid2.Marshal()
				writeFile(t, files.cert, certPEM)
				writeFile(t, files.key, otherKey)
			},
			wantErr: "leaf certificate does not match private key",
		},
		{
			name: "SVID from another CA",
			write: func() {
				files.writeSVID(t, identitytest.SVID(t, identitytest.NewCA(t, "example.org"), gatewayID))
			},
			wantErr: "does not verify against bundle",
		},
		{
			name:    "empty bundle",
			write:   func() { files.writeSVID(t, svid2); writeFile(t, files.bundle, nil) },
			wantErr: "bundle file " + files.bundle + ": empty, no PEM certificates",
		},
		{
			name:    "key in bundle",
			write:   func() { _, k, _ := svid2.Marshal(); writeFile(t, files.bundle, k) },
			wantErr: `unexpected PEM block "PRIVATE KEY"`,
		},
		{
			name:    "broken federated bundle",
			write:   func() { writeFile(t, files.bundle, ca.RootPEM()); writeFile(t, files.fb, []byte("# moved\n")) },
			wantErr: "bundle file " + files.fb + ": no PEM certificates",
		},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			before := rl.count()
			b.write()
			// A poll may catch a multi-file update half-way and report
			// that state first; wait for the final one.
			eventually(t, "OnReload error containing "+b.wantErr, func() bool {
				return rl.count() > before && rl.last() != nil && strings.Contains(rl.last().Error(), b.wantErr)
			})
			st := src.Status()
			if st.Serial != svid2.Certificates[0].SerialNumber.Text(16) {
				t.Errorf("serving serial %s after a bad reload, want the old %s", st.Serial, svid2.Certificates[0].SerialNumber.Text(16))
			}
			if st.LastError == nil {
				t.Error("Status.LastError not set")
			}
			if _, err := src.GetX509SVID(); err != nil {
				t.Errorf("GetX509SVID after bad reload: %v", err)
			}
		})
	}

	// Fixing the files recovers and clears the error.
	writeFile(t, files.fb, partner.RootPEM())
	svid3 := identitytest.SVID(t, ca, gatewayID)
	files.writeSVID(t, svid3)
	eventually(t, "recovery", func() bool {
		st := src.Status()
		return st.LastError == nil && st.Serial == svid3.Certificates[0].SerialNumber.Text(16)
	})
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := src.GetX509SVID(); !errors.Is(err, identity.ErrSourceClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func TestNewFilesErrors(t *testing.T) {
	ca := identitytest.NewCA(t, "example.org")
	svid := identitytest.SVID(t, ca, gatewayID)
	good := writeSVIDFiles(t, svid, ca.RootPEM())

	twoURIs := writeSVIDFiles(t, svid, ca.RootPEM())
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Root().Raw})
	writeFile(t, twoURIs.cert, caPEM) // a CA certificate is not an SVID

	expired := writeSVIDFiles(t, identitytest.ExpiredSVID(t, ca, gatewayID), ca.RootPEM())

	tests := []struct {
		name    string
		opts    identity.FilesOptions
		wantErr string
	}{
		{name: "no cert", opts: identity.FilesOptions{Key: good.key, Bundle: good.bundle}, wantErr: "cert file is required"},
		{name: "no key", opts: identity.FilesOptions{Cert: good.cert, Bundle: good.bundle}, wantErr: "key file is required"},
		{name: "no bundle", opts: identity.FilesOptions{Cert: good.cert, Key: good.key}, wantErr: "bundle file is required"},
		{name: "missing file", opts: identity.FilesOptions{Cert: good.cert, Key: good.key, Bundle: good.dir + "/nope.pem"}, wantErr: "nope.pem: no such file"},
		{name: "not an SVID", opts: identity.FilesOptions{Cert: twoURIs.cert, Key: twoURIs.key, Bundle: twoURIs.bundle}, wantErr: "SVID from cert file " + twoURIs.cert},
		{name: "expired", opts: identity.FilesOptions{Cert: expired.cert, Key: expired.key, Bundle: expired.bundle}, wantErr: "certificate has expired"},
		{
			name:    "bad federated trust domain",
			opts:    identity.FilesOptions{Cert: good.cert, Key: good.key, Bundle: good.bundle, FederatedBundles: map[string]string{"Partner": good.bundle}},
			wantErr: `trust domain "Partner"`,
		},
		{
			name:    "federated bundle for own trust domain",
			opts:    identity.FilesOptions{Cert: good.cert, Key: good.key, Bundle: good.bundle, FederatedBundles: map[string]string{"example.org": good.bundle}},
			wantErr: "the SVID's own trust domain",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := identity.NewFiles(tt.opts)
			if err == nil {
				src.Close()
				t.Fatalf("NewFiles succeeded, want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}
