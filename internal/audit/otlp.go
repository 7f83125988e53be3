package audit

import (
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"

	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	common "go.opentelemetry.io/proto/otlp/common/v1"
	logs "go.opentelemetry.io/proto/otlp/logs/v1"
	resource "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"
)

// OTLPOptions configures an OTLPSink.
type OTLPOptions struct {
	// URL is the collector's OTLP/HTTP logs endpoint
	// (https://collector:4318/v1/logs).
	URL    string
	Client *http.Client
	// Header is added to every request (an Authorization header).
	Header http.Header
	// Product names the gateway in the resource (service.name,
	// service.version).
	Product    Product
	MaxRecords int
	MaxBytes   int
}

// OTLPSink exports batches of records as OpenTelemetry logs over OTLP/HTTP
// (protobuf, POST /v1/logs). Each record is one log record: its body is the
// record as the sink's format writes it (a JSON string), its time the
// record's, its severity INFO (WARN for a denial, a failed handshake or a
// gap), with the attributes a collector can route on: event.name
// ("tollgate.audit"), log.record.uid (the event id, for de-duplication),
// tollgate.kind and http.response.status_code; the W3C trace id, when the
// request had one, is the record's trace_id. A 2xx answer acknowledges the
// batch.
type OTLPSink struct {
	opts     OTLPOptions
	resource *resource.Resource
}

// NewOTLPSink returns a sink for opts.
func NewOTLPSink(opts OTLPOptions) (*OTLPSink, error) {
	if err := checkHTTPSURL(opts.URL); err != nil {
		return nil, fmt.Errorf("audit: OTLP: %w", err)
	}
	opts.Client = cmp.Or(opts.Client, newSinkClient())
	opts.MaxRecords = cmp.Or(opts.MaxRecords, DefaultBatchRecords)
	opts.MaxBytes = cmp.Or(opts.MaxBytes, DefaultBatchBytes)
	if opts.Product == (Product{}) {
		opts.Product = DefaultProduct
	}
	host, _ := os.Hostname()
	return &OTLPSink{opts: opts, resource: &resource.Resource{Attributes: []*common.KeyValue{
		strAttr("service.name", "tollgate"), strAttr("service.version", opts.Product.Version), strAttr("host.name", host),
	}}}, nil
}

func strAttr(k, v string) *common.KeyValue {
	return &common.KeyValue{Key: k, Value: &common.AnyValue{Value: &common.AnyValue_StringValue{StringValue: v}}}
}

func intAttr(k string, v int64) *common.KeyValue {
	return &common.KeyValue{Key: k, Value: &common.AnyValue{Value: &common.AnyValue_IntValue{IntValue: v}}}
}

// MaxBatch implements BatchSink.
func (s *OTLPSink) MaxBatch() (int, int) { return s.opts.MaxRecords, s.opts.MaxBytes }

// Write exports one record.
func (s *OTLPSink) Write(ctx context.Context, line []byte) error {
	return s.WriteBatch(ctx, [][]byte{line})
}

// WriteBatch exports lines as one ExportLogsServiceRequest.
func (s *OTLPSink) WriteBatch(ctx context.Context, lines [][]byte) error {
	now := uint64(time.Now().UnixNano())
	records := make([]*logs.LogRecord, 0, len(lines))
	for _, l := range lines {
		l = bytes.TrimSuffix(l, []byte("\n"))
		records = append(records, otlpRecord(l, now))
	}
	req := &collogs.ExportLogsServiceRequest{ResourceLogs: []*logs.ResourceLogs{{
		Resource: s.resource,
		ScopeLogs: []*logs.ScopeLogs{{
			Scope:      &common.InstrumentationScope{Name: "tollgate.audit", Version: s.opts.Product.Version},
			LogRecords: records,
		}},
	}}}
	body, err := proto.Marshal(req)
	if err != nil {
		return fmt.Errorf("audit: OTLP encoding: %w", err)
	}
	answer, err := post(ctx, s.opts.Client, s.opts.URL, "application/x-protobuf", s.opts.Header, body)
	if err != nil {
		return fmt.Errorf("audit: OTLP: %w", err)
	}
	var resp collogs.ExportLogsServiceResponse
	if err := proto.Unmarshal(answer, &resp); err == nil {
		if ps := resp.GetPartialSuccess(); ps != nil && ps.GetRejectedLogRecords() > 0 {
			// The collector refused some records as invalid: sending them
			// again would be refused again. Reported; the batch counts as
			// delivered.
			return fmt.Errorf("%w: the collector rejected %d of %d records", errRejected, ps.GetRejectedLogRecords(), len(lines))
		}
	}
	return nil
}

// errRejected marks records a receiver refuses for good: retrying can't
// help. The Logger counts them and moves on.
var errRejected = fmt.Errorf("audit: records rejected")

// otlpRecord is one record as an OTLP log record. It reads what it needs
// from the line, whichever format made it (native, OCSF or ECS JSON; a CEF
// line is a body only).
func otlpRecord(line []byte, observed uint64) *logs.LogRecord {
	r := &logs.LogRecord{
		ObservedTimeUnixNano: observed,
		SeverityNumber:       logs.SeverityNumber_SEVERITY_NUMBER_INFO,
		SeverityText:         "INFO",
		EventName:            "tollgate.audit",
		Body:                 &common.AnyValue{Value: &common.AnyValue_StringValue{StringValue: string(line)}},
		Attributes:           []*common.KeyValue{strAttr("event.name", "tollgate.audit")},
	}
	if t, ok := recordTime(line); ok {
		r.TimeUnixNano = uint64(t.UnixNano())
	}
	var ev Event
	if line[0] == '{' && json.Unmarshal(line, &ev) == nil && ev.Kind != "" {
		// A native record: its fields as attributes.
		if ev.ID != "" {
			r.Attributes = append(r.Attributes, strAttr("log.record.uid", ev.ID))
		}
		r.Attributes = append(r.Attributes, strAttr("tollgate.kind", string(ev.Kind)))
		if ev.Status != 0 {
			r.Attributes = append(r.Attributes, intAttr("http.response.status_code", int64(ev.Status)))
		}
		if ev.RequestID != "" {
			r.Attributes = append(r.Attributes, strAttr("tollgate.request_id", ev.RequestID))
		}
		if tid, err := hex.DecodeString(ev.TraceID); err == nil && len(tid) == 16 {
			r.TraceId = tid
		}
		if (ev.Decision != nil && !ev.Decision.Allow && !ev.Decision.DryRun) || ev.Error == ErrTLSHandshake || ev.Gap != nil {
			r.SeverityNumber, r.SeverityText = logs.SeverityNumber_SEVERITY_NUMBER_WARN, "WARN"
		}
		return r
	}
	// Another format: the de-duplication key where it has one.
	var other struct {
		Metadata struct {
			UID string `json:"uid"`
		} `json:"metadata"`
		Event struct {
			ID string `json:"id"`
		} `json:"event"`
		SeverityID int `json:"severity_id"`
	}
	if json.Unmarshal(line, &other) == nil {
		if uid := cmp.Or(other.Metadata.UID, other.Event.ID); uid != "" {
			r.Attributes = append(r.Attributes, strAttr("log.record.uid", uid))
		}
		if other.SeverityID >= 3 {
			r.SeverityNumber, r.SeverityText = logs.SeverityNumber_SEVERITY_NUMBER_WARN, "WARN"
		}
	}
	return r
}

// Close releases idle connections.
func (s *OTLPSink) Close() error {
	s.opts.Client.CloseIdleConnections()
	return nil
}
