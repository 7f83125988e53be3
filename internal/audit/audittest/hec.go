package audittest

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"sync"
)

// HEC is a Splunk HTTP Event Collector stand-in (the contrib HEC receiver
// can't be obtained here). It follows Splunk's documented HEC protocol as
// far as a sender sees it: token auth ("Authorization: Splunk <token>"),
// concatenated JSON envelopes on /services/collector/event, a required
// channel (X-Splunk-Request-Channel), an ackId per batch, and
// /services/collector/ack, which reports a batch indexed from its second
// poll on. LostAck names a batch the indexer "loses": its events are not
// counted and its ack never comes.
type HEC struct {
	Token   string
	LostAck int64

	mu      sync.Mutex
	nextAck int64
	polls   map[int64]int
	ids     map[string]int
}

func (e *HEC) answer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// ServeHTTP implements the collector's two endpoints.
func (e *HEC) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Splunk "+e.Token {
		e.answer(w, http.StatusUnauthorized, map[string]any{"text": "Invalid authorization", "code": 3})
		return
	}
	channel := r.Header.Get("X-Splunk-Request-Channel")
	if channel == "" {
		e.answer(w, http.StatusBadRequest, map[string]any{"text": "Data channel is missing", "code": 10})
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	switch r.URL.Path {
	case "/services/collector/event":
		dec := json.NewDecoder(r.Body)
		var batch []string
		for {
			var env struct {
				Time       float64         `json:"time"`
				Sourcetype string          `json:"sourcetype"`
				Event      json.RawMessage `json:"event"`
			}
			if err := dec.Decode(&env); err == io.EOF {
				break
			} else if err != nil || env.Time == 0 || env.Sourcetype != "tollgate:audit" || len(env.Event) == 0 || env.Event[0] != '{' {
				e.answer(w, http.StatusBadRequest, map[string]any{"text": "Invalid data format", "code": 6})
				return
			}
			var ev struct {
				RequestID string `json:"requestId"`
				Metadata  struct {
					CorrelationUID string `json:"correlation_uid"`
				} `json:"metadata"`
			}
			json.Unmarshal(env.Event, &ev)
			if ev.RequestID == "" {
				ev.RequestID = ev.Metadata.CorrelationUID
			}
			batch = append(batch, ev.RequestID)
		}
		e.nextAck++
		id := e.nextAck
		if id != e.LostAck {
			for _, rid := range batch {
				e.ids[rid]++
			}
		}
		e.answer(w, http.StatusOK, map[string]any{"text": "Success", "code": 0, "ackId": id})
	case "/services/collector/ack":
		var req struct {
			Acks []int64 `json:"acks"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || r.URL.Query().Get("channel") != channel {
			e.answer(w, http.StatusBadRequest, map[string]any{"text": "Invalid data format", "code": 6})
			return
		}
		acks := map[string]bool{}
		for _, id := range req.Acks {
			e.polls[id]++
			// Indexed after the second poll, unless it is the lost batch.
			acks[strconv.FormatInt(id, 10)] = id != e.LostAck && e.polls[id] >= 2
		}
		e.answer(w, http.StatusOK, map[string]any{"acks": acks})
	default:
		http.NotFound(w, r)
	}
}

// NewHEC returns an endpoint that takes token; serve it with
// httptest.NewTLSServer.
func NewHEC(token string) *HEC {
	return &HEC{Token: token, polls: map[int64]int{}, ids: map[string]int{}}
}

// RequestIDs counts the indexed events by their requestId (native records)
// or metadata.correlation_uid (OCSF).
func (e *HEC) RequestIDs() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := make(map[string]int, len(e.ids))
	for k, v := range e.ids {
		m[k] = v
	}
	return m
}

// Polls is how often ackID was polled.
func (e *HEC) Polls(ackID int64) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.polls[ackID]
}
