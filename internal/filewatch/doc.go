// Package filewatch is the one place Tollgate reads files that change while it
// runs: certificates, SVID files, policies, credentials and keys.
//
// [Read] reads a set of paths into a [Snapshot]: every file's path and bytes,
// and a hash over all of them (names included). Directories, when allowed,
// are walked recursively in lexical order, skipping hidden entries (names
// starting with ".", such as Kubernetes' "..data" links), as the policy
// loader reads them.
//
// Two rules keep a reader from acting on a file caught mid-write:
//
//   - Settle. A change counts only when two reads a settle interval apart
//     give the same hash. A [Watcher] reports a change once it has settled,
//     and [ReadSettled] returns only a settled snapshot (for SIGHUP). A
//     truncate-then-write rewrite that completes within the settle interval
//     is never delivered half-written.
//   - What was hashed is what is delivered. Callers parse the Snapshot's
//     bytes and never re-open the files, so there is no window between the
//     check and the read.
//
// Content, not size or mtime, decides whether something changed: a rewrite
// within one timestamp tick is seen, a touch that changes only the mtime is
// not. A read error (a missing file, a file over the size bound) is an error,
// never an empty snapshot; a Watcher reports it, settled and once, like a
// change.
//
// The documented way to update a watched file is an atomic replace: write a
// temporary file in the same directory, then rename it over the old one (or
// swap a symlink, as kubelet does for ConfigMaps and Secrets). A reader then
// sees the old or the new content, never a mix. The settle rule is the
// safety net for writers that do not, and it cannot help a writer that stalls
// for longer than the settle interval in the middle of a file.
package filewatch
