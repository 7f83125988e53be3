package audit

// Decided is the seam a front calls once it has decided to forward a request,
// before anything is forwarded (exchange.Recorder). Delivery is best effort
// today (see Logger), so it never refuses; a durable, fail-closed journal
// answers here whether the decision is on disk.
func (l *Logger) Decided(*Event) error { return nil }

// Completed records the finished event (exchange.Recorder): Record.
func (l *Logger) Completed(ev *Event) { l.Record(ev) }
