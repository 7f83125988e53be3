package main

import (
	"crypto/ed25519"
	"fmt"
	"io"

	"tollgate.dev/tollgate/internal/audit"
)

const auditUsage = `Usage: gateway audit COMMAND

  gateway audit verify [--key FILE] PATH...
      Check audit journal files (or journal directories): every line a record,
      sequence numbers without holes, each record's prev the SHA-256 of the
      line before it, and with --key (Ed25519, public or private PEM) the
      signatures of the checkpoints. Prints every break by file and line;
      exit 1 on any.
`

func cmdAudit(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return 2
	}
	switch args[0] {
	case "verify":
		return cmdAuditVerify(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, auditUsage)
		return 0
	}
	fmt.Fprintf(stderr, "gateway audit: unknown command %q\n\n%s", args[0], auditUsage)
	return 2
}

func cmdAuditVerify(args []string, stdout, stderr io.Writer) int {
	fs := newCommand("audit verify", `audit verify [--key FILE] PATH...

Checks audit journal segments: the files given, or every segment of a journal
directory (audit.journal.dir), in sequence order.`, stdout, stderr)
	keyFile := fs.String("key", "", "Ed25519 key (public, or the signing key itself) that checks the checkpoints' signatures")
	if exit, ok := fs.parse(args); !ok {
		return exit
	}
	if fs.NArg() == 0 {
		return fs.fail("name journal files or directories")
	}
	var key ed25519.PublicKey
	if *keyFile != "" {
		k, err := audit.LoadVerifyKey(*keyFile)
		if err != nil {
			fmt.Fprintf(stderr, "gateway %v\n", err)
			return 2
		}
		key = k
	}
	rep, err := audit.Verify(fs.Args(), key)
	if err != nil {
		fmt.Fprintf(stderr, "gateway %v\n", err)
		return 1
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(stdout, "note: %s\n", n)
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(stdout, "%s\n", p)
	}
	lost := ""
	if rep.Checkpoints > 0 {
		what := "consistent with the chain"
		if key != nil {
			what = "signatures verified"
		}
		lost = fmt.Sprintf("; %d checkpoints (%s) through seq %d", rep.Checkpoints, what, rep.SignedThrough)
	}
	if rep.Lost > 0 {
		lost += fmt.Sprintf("; gap records account for %d lost events", rep.Lost)
	}
	if len(rep.Problems) > 0 {
		fmt.Fprintf(stdout, "FAIL: %d problems in %d records (seq %d to %d) in %d files%s\n",
			len(rep.Problems), rep.Records, rep.FirstSeq, rep.LastSeq, rep.Files, lost)
		return 1
	}
	fmt.Fprintf(stdout, "ok: %d records (seq %d to %d) in %d files, chain intact%s\n",
		rep.Records, rep.FirstSeq, rep.LastSeq, rep.Files, lost)
	return 0
}
