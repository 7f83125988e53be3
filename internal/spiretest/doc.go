// Package spiretest runs a real SPIRE server and agent (v1.13.3) on loopback for end-to-end tests.
//
// Tests get a Workload API socket served by a real spire-agent, so what they exercise is the
// same protocol, rotation behaviour and error paths the gateway meets in production, not a fake.
//
// The binaries are built once per machine by scripts/spire/install.sh into
// ${TOLLGATE_CACHE:-$HOME/.cache/tollgate}/spire-v1.13.3/bin (or found via $SPIRE_BIN). When they
// are missing, Start skips the test, unless TOLLGATE_REQUIRE_SPIRE is set (CI sets it), in which
// case it fails: a missing build must never turn into a silently green run.
//
// Each Env has its own run folder under os.TempDir (short, because unix socket paths are limited
// to 108 bytes), its own free loopback ports, and its own trust domain, so one test can start two
// (federation). Both daemons run in their own session, are stopped by PID on cleanup, and their
// logs are printed when the test failed.
//
// Workloads are selected by uid: the test process itself is the workload, so an entry with
// selector UIDSelector() (unix:uid:<our uid>) gives the test process that SPIFFE ID. Several such
// entries give the process several SVIDs at once; pick one with workloadapi.WithDefaultX509SVIDPicker.
//
// Tests that use this package should carry the build tag `spire` (go test -tags spire ./...) so the
// default test run stays fast.
package spiretest
