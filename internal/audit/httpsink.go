package audit

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Batch bounds of the HTTP sinks, for options left zero.
const (
	DefaultBatchRecords = 500
	DefaultBatchBytes   = 1 << 20
)

// WebhookOptions configures a WebhookSink.
type WebhookOptions struct {
	// URL receives POSTs of NDJSON (https).
	URL string
	// Client sends them (its Transport's TLS config verifies the endpoint);
	// nil: a client with the system roots.
	Client *http.Client
	// Header is added to every request (an Authorization header).
	Header http.Header
	// MaxRecords and MaxBytes bound a batch.
	MaxRecords, MaxBytes int
}

// WebhookSink POSTs batches of records as NDJSON
// (Content-Type: application/x-ndjson), one record per line. Any 2xx
// answer acknowledges the whole batch; anything else (or no answer) is an
// error and the batch is sent again: a receiver de-duplicates by the
// records' id.
type WebhookSink struct {
	opts WebhookOptions
	body bytes.Buffer
}

// NewWebhookSink returns a sink for opts.
func NewWebhookSink(opts WebhookOptions) (*WebhookSink, error) {
	if err := checkHTTPSURL(opts.URL); err != nil {
		return nil, fmt.Errorf("audit: webhook: %w", err)
	}
	opts.Client = cmp.Or(opts.Client, newSinkClient())
	opts.MaxRecords = cmp.Or(opts.MaxRecords, DefaultBatchRecords)
	opts.MaxBytes = cmp.Or(opts.MaxBytes, DefaultBatchBytes)
	return &WebhookSink{opts: opts}, nil
}

func checkHTTPSURL(u string) error {
	if !strings.HasPrefix(u, "https://") {
		return fmt.Errorf("URL %q: want https://", u)
	}
	return nil
}

// newSinkClient is an HTTP sink's client when none is given: the system
// roots, a transport of its own.
func newSinkClient() *http.Client {
	return &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
}

// MaxBatch implements BatchSink.
func (s *WebhookSink) MaxBatch() (int, int) { return s.opts.MaxRecords, s.opts.MaxBytes }

// Write sends one record.
func (s *WebhookSink) Write(ctx context.Context, line []byte) error {
	return s.WriteBatch(ctx, [][]byte{line})
}

// WriteBatch sends lines in one POST.
func (s *WebhookSink) WriteBatch(ctx context.Context, lines [][]byte) error {
	s.body.Reset()
	for _, l := range lines {
		s.body.Write(l)
	}
	_, err := post(ctx, s.opts.Client, s.opts.URL, "application/x-ndjson", s.opts.Header, s.body.Bytes())
	if err != nil {
		return fmt.Errorf("audit: webhook: %w", err)
	}
	return nil
}

// Close releases idle connections.
func (s *WebhookSink) Close() error {
	s.opts.Client.CloseIdleConnections()
	return nil
}

// maxAnswer bounds what is read of an HTTP sink's answer.
const maxAnswer = 64 << 10

// post sends body and returns the answer of a 2xx; any other status is an
// error naming it (the answer's text stays out: it may echo secrets).
func post(ctx context.Context, c *http.Client, url, contentType string, h http.Header, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s answered %s", redactURL(url), resp.Status)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	return answer, nil
}

// redactURL keeps scheme, host and path of u: no query (which may carry a
// token).
func redactURL(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		return u[:i]
	}
	return u
}

// HECOptions configures a HECSink.
type HECOptions struct {
	// URL is the HEC endpoint's base (https://splunk.example.com:8088).
	URL string
	// Token is the HEC token, sent as "Authorization: Splunk <token>".
	Token  string
	Client *http.Client
	// Index, Source, Sourcetype and Host are the events' metadata; empty
	// ones are left to the token's defaults (Sourcetype: "tollgate:audit").
	Index, Source, Sourcetype, Host string
	// Ack waits for indexer acknowledgement: a batch counts as delivered
	// only once Splunk says it is indexed (polling /services/collector/ack
	// every AckPoll, at most AckTimeout). Needs a channel: Channel, or a
	// random one.
	Ack                 bool
	Channel             string
	AckPoll, AckTimeout time.Duration
	MaxRecords          int
	MaxBytes            int
}

// HECSink sends batches to Splunk's HTTP Event Collector
// (/services/collector/event): one JSON envelope per record, the record as
// its "event", "time" from the record. Without Ack, HEC's "Success" answer
// acknowledges the batch; with Ack, the indexer's acknowledgement does.
type HECSink struct {
	opts   HECOptions
	header http.Header
	body   bytes.Buffer
}

// NewHECSink returns a sink for opts.
func NewHECSink(opts HECOptions) (*HECSink, error) {
	if err := checkHTTPSURL(opts.URL); err != nil {
		return nil, fmt.Errorf("audit: HEC: %w", err)
	}
	if opts.Token == "" {
		return nil, errors.New("audit: HEC: no token")
	}
	opts.URL = strings.TrimSuffix(opts.URL, "/")
	opts.Client = cmp.Or(opts.Client, newSinkClient())
	opts.Sourcetype = cmp.Or(opts.Sourcetype, "tollgate:audit")
	opts.AckPoll = cmp.Or(opts.AckPoll, time.Second)
	opts.AckTimeout = cmp.Or(opts.AckTimeout, time.Minute)
	opts.MaxRecords = cmp.Or(opts.MaxRecords, DefaultBatchRecords)
	opts.MaxBytes = cmp.Or(opts.MaxBytes, DefaultBatchBytes)
	if opts.Ack && opts.Channel == "" {
		var b [16]byte
		rand.Read(b[:])
		b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80 // a UUIDv4, as Splunk wants
		h := hex.EncodeToString(b[:])
		opts.Channel = h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
	}
	s := &HECSink{opts: opts, header: http.Header{"Authorization": {"Splunk " + opts.Token}}}
	if opts.Channel != "" {
		s.header.Set("X-Splunk-Request-Channel", opts.Channel)
	}
	return s, nil
}

// MaxBatch implements BatchSink.
func (s *HECSink) MaxBatch() (int, int) { return s.opts.MaxRecords, s.opts.MaxBytes }

// WriteTimeout is how long a batch may take: with Ack, as long as the
// indexer may take to acknowledge it.
func (s *HECSink) WriteTimeout() time.Duration {
	if s.opts.Ack {
		return s.opts.AckTimeout + 10*time.Second
	}
	return 0
}

// Write sends one record.
func (s *HECSink) Write(ctx context.Context, line []byte) error {
	return s.WriteBatch(ctx, [][]byte{line})
}

// hecAnswer is HEC's reply to an event POST.
type hecAnswer struct {
	Text  string `json:"text"`
	Code  int    `json:"code"`
	AckID *int64 `json:"ackId"`
}

// WriteBatch sends lines in one POST and, with Ack, waits for the indexer.
func (s *HECSink) WriteBatch(ctx context.Context, lines [][]byte) error {
	s.body.Reset()
	for _, l := range lines {
		l = bytes.TrimSuffix(l, []byte("\n"))
		s.body.WriteString(`{"time":`)
		if t, ok := recordTime(l); ok {
			s.body.WriteString(strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64))
		} else {
			s.body.WriteString(strconv.FormatFloat(float64(time.Now().UnixMilli())/1000, 'f', 3, 64))
		}
		for _, f := range [][2]string{{"host", s.opts.Host}, {"source", s.opts.Source}, {"sourcetype", s.opts.Sourcetype}, {"index", s.opts.Index}} {
			if f[1] != "" {
				s.body.WriteString(`,"` + f[0] + `":`)
				s.body.Write(appendJSONString(nil, f[1]))
			}
		}
		s.body.WriteString(`,"event":`)
		s.body.Write(l)
		s.body.WriteString("}\n")
	}
	answer, err := post(ctx, s.opts.Client, s.opts.URL+"/services/collector/event", "application/json", s.header, s.body.Bytes())
	if err != nil {
		return fmt.Errorf("audit: HEC: %w", err)
	}
	var a hecAnswer
	if err := json.Unmarshal(answer, &a); err != nil || a.Code != 0 {
		return fmt.Errorf("audit: HEC did not accept the batch (code %d %q)", a.Code, a.Text)
	}
	if !s.opts.Ack {
		return nil
	}
	if a.AckID == nil {
		return errors.New("audit: HEC answered without an ackId: is indexer acknowledgement on for this token?")
	}
	return s.waitAck(ctx, *a.AckID)
}

// waitAck polls the ack endpoint until the indexer has the batch.
func (s *HECSink) waitAck(ctx context.Context, id int64) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.AckTimeout)
	defer cancel()
	body := []byte(`{"acks":[` + strconv.FormatInt(id, 10) + `]}`)
	for {
		answer, err := post(ctx, s.opts.Client, s.opts.URL+"/services/collector/ack?channel="+s.opts.Channel, "application/json", s.header, body)
		if err == nil {
			var a struct {
				Acks map[string]bool `json:"acks"`
			}
			if json.Unmarshal(answer, &a) == nil && a.Acks[strconv.FormatInt(id, 10)] {
				return nil
			}
		}
		if !sleepCtx(ctx, s.opts.AckPoll) {
			return fmt.Errorf("audit: HEC: batch %d not acknowledged by the indexer within %v", id, s.opts.AckTimeout)
		}
	}
}

// Close releases idle connections.
func (s *HECSink) Close() error {
	s.opts.Client.CloseIdleConnections()
	return nil
}

// recordTime reads a record's time: native ("time" RFC 3339) or OCSF
// ("time" epoch milliseconds).
func recordTime(line []byte) (time.Time, bool) {
	if t, ok := lineTime(line); ok {
		return t, true
	}
	var r struct {
		Time json.Number `json:"time"`
	}
	if json.Unmarshal(line, &r) != nil {
		return time.Time{}, false
	}
	ms, err := r.Time.Int64()
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}
