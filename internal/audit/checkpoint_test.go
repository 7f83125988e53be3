package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tollgate.dev/tollgate/internal/testkit"
)

func newTestSigner(t *testing.T) (*Signer, ed25519.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return NewSigner(priv), pub
}

// signedJournal writes n events with a checkpoint every 10 records and one
// at close, and returns the journal's files in order.
func signedJournal(t *testing.T, s *Signer, n int) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	l := newJournalLogger(t, openTestJournal(t, dir, JournalOptions{Signer: s, CheckpointEvery: 10, SegmentBytes: 4 << 10}),
		Config{Sinks: []Sink{&collectSink{}}})
	for i := 1; i <= n; i++ {
		l.Record(&Event{RequestID: fmt.Sprint(i), Status: 200, Path: "/x"})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := journalFiles([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	return dir, files
}

func TestCheckpointsVerify(t *testing.T) {
	s, pub := newTestSigner(t)
	dir, _ := signedJournal(t, s, 35)
	rep, err := Verify([]string{dir}, pub)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 {
		t.Fatalf("problems in an untouched signed journal: %v", rep.Problems)
	}
	// 35 events: checkpoints after every 10 records, and the last at close.
	if rep.Checkpoints < 4 || rep.SignedThrough != rep.LastSeq-1 {
		t.Errorf("%d checkpoints through seq %d (last seq %d): want 4 or more, the last covering the record before it",
			rep.Checkpoints, rep.SignedThrough, rep.LastSeq)
	}
	_, other := newTestSigner(t)
	rep, err = Verify([]string{dir}, other)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) == 0 || !strings.Contains(rep.Problems[0].What, "not the given key") {
		t.Errorf("another key: problems %v, want the key named", rep.Problems)
	}
}

// TestCheckpointsCatchARewrittenChain: an attacker without the key edits a
// record and recomputes every hash after it, so the chain holds again. The
// signature of the next checkpoint still fails.
func TestCheckpointsCatchARewrittenChain(t *testing.T) {
	s, pub := newTestSigner(t)
	dir, files := signedJournal(t, s, 35)
	var lines []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.SplitAfter(string(b), "\n")...)
	}
	// Rewrite everything into one file: edit record 5, recompute the chain.
	var out strings.Builder
	var prev [32]byte
	for i, l := range lines {
		if l == "" {
			continue
		}
		var ev Event
		if err := ev.UnmarshalJSON([]byte(strings.TrimSuffix(l, "\n"))); err != nil {
			t.Fatal(err)
		}
		if ev.RequestID == "5" {
			ev.Status = 403
		}
		if i > 0 {
			ev.Prev = hex.EncodeToString(prev[:])
			if ev.Checkpoint != nil {
				ev.Checkpoint.Hash = ev.Prev // consistent, but not re-signed
			}
		}
		b := ev.AppendJSON(nil)
		prev = sha256.Sum256(b)
		out.Write(append(b, '\n'))
	}
	for _, f := range files {
		os.Remove(f)
	}
	forged := filepath.Join(dir, activeSegment)
	if err := os.WriteFile(forged, []byte(out.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	// Without the key the forgery passes: the chain alone can't tell.
	rep, err := Verify([]string{dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 {
		t.Fatalf("the recomputed chain should hold without the key: %v", rep.Problems)
	}
	rep, err = Verify([]string{dir}, pub)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) == 0 || !strings.Contains(rep.Problems[0].What, "bad signature") {
		t.Fatalf("with the key: problems %v, want a bad signature", rep.Problems)
	}
	// The first bad checkpoint is the one right after the edited record.
	if p := rep.Problems[0]; p.Line > 13 {
		t.Errorf("first problem at line %d, want the checkpoint after record 5 (line 11 or so)", p.Line)
	}
}

func TestLoadKeys(t *testing.T) {
	dir := t.TempDir()
	keyFile, pubFile, pub := testkit.WriteEd25519Key(t, dir, "audit")
	s, err := LoadSigner(keyFile)
	if err != nil || s.keyID != KeyID(pub) {
		t.Fatalf("LoadSigner: %v, key id %v", err, s)
	}
	for _, f := range []string{keyFile, pubFile} {
		k, err := LoadVerifyKey(f)
		if err != nil || !k.Equal(pub) {
			t.Errorf("LoadVerifyKey(%s): %v", filepath.Base(f), err)
		}
	}
	if _, err := LoadSigner(pubFile); err == nil {
		t.Error("LoadSigner took a public key")
	}
	if _, err := LoadVerifyKey(filepath.Join(dir, "missing")); err == nil {
		t.Error("LoadVerifyKey took a missing file")
	}
}
