// Package oplog is the gateway's operational log: an [slog.Handler] that never
// blocks the goroutine that logs (security invariant 10: what the gateway
// writes can neither block nor kill the request path).
//
// A record is formatted by slog's own Text or JSON handler in the caller's
// goroutine, then its line is put on a bounded queue and returned from at
// once. One writer goroutine drains the queue to the underlying writer
// (usually stderr). Whatever that writer does, Handle does not wait for it:
//
//   - A full queue (a slow or stalled reader) drops the line and counts it;
//     once the writer makes progress it writes one summary line,
//     "N log lines dropped", with the count in its "dropped" attribute.
//   - A failing writer (EPIPE from a reader that died) counts the failure and
//     goes on with the next line. Surviving the SIGPIPE that a write to a
//     broken stdout or stderr raises is the command's job (cmd/gateway).
//   - Repeated identical records (same level, message and attributes' text)
//     pass a per-record token bucket: a burst, then at most one per interval.
//     The first record of a key that passes after some were held back carries
//     a "suppressed" attribute with their count. Attributes that differ on
//     every request (a request id) can be left out of the comparison with
//     [Options.VaryingKeys], so that a failing upstream under load writes a few
//     lines rather than one per request.
//
// Durations print as Go durations ("30s") in both formats, not as
// nanoseconds. [Handler.Stats] are the counters for metrics, and
// [Handler.Close] flushes what it can until its context is done.
package oplog
