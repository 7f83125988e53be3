package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// open is an open-loop load: requests are due at a fixed rate whether or
// not earlier ones have been answered, over a fixed pool of keep-alive
// connections, one request at a time on each (HTTP/1.1, or HTTP/2 with one
// stream at a time). Each request's latency runs from when it was due and
// handed to the pool, so time spent waiting for a free connection counts:
// the queueing a closed loop hides (coordinated omission).
//
// It speaks HTTP on the TLS connection itself, with no client library's
// per-request machinery, so the load generator takes as little of the
// machine's CPU from the target as it can. It prints "requests p50 p99 max
// errors", latencies in microseconds, and exits 1 if any request failed.
func open(args []string) error {
	fs := flag.NewFlagSet("open", flag.ExitOnError)
	target := fs.String("url", "", "target URL (https)")
	ca := fs.String("ca", "", "CA certificate file")
	rate := fs.Int("rate", 1000, "requests per second")
	dur := fs.Duration("d", 5*time.Second, "duration")
	conns := fs.Int("c", 64, "connections")
	h2 := fs.Bool("h2", false, "HTTP/2 instead of HTTP/1.1")
	header := fs.String("H", "", "a request header, Name: value")
	fs.Parse(args)
	res, err := openLoop(openOptions{url: *target, ca: *ca, rate: *rate, dur: *dur, conns: *conns, h2: *h2, header: *header})
	if res.requests > 0 {
		fmt.Printf("%d %d %d %d %d\n", res.requests, res.p50.Microseconds(), res.p99.Microseconds(), res.max.Microseconds(), res.failed)
	}
	return err
}

type openOptions struct {
	url, ca, header string
	rate, conns     int
	dur             time.Duration
	h2              bool
}

type openResult struct {
	requests, failed int
	p50, p99, max    time.Duration
}

// openLoop runs the load; an error if any request failed.
func openLoop(o openOptions) (openResult, error) {
	u, err := url.Parse(o.url)
	if err != nil || u.Scheme != "https" {
		return openResult{}, fmt.Errorf("-url: want an https URL, got %q", o.url)
	}
	pem, err := os.ReadFile(o.ca)
	if err != nil {
		return openResult{}, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	var hname, hvalue string
	if n, v, ok := strings.Cut(o.header, ":"); ok {
		hname, hvalue = strings.ToLower(strings.TrimSpace(n)), strings.TrimSpace(v)
	}
	proto := "http/1.1"
	if o.h2 {
		proto = "h2"
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: u.Hostname(), NextProtos: []string{proto}}

	// Connect everything first: handshakes are not what is measured.
	clients := make([]client, o.conns)
	for i := range clients {
		c, err := tls.Dial("tcp", u.Host, cfg)
		if err != nil {
			return openResult{}, err
		}
		defer c.Close()
		if c.ConnectionState().NegotiatedProtocol != proto && (o.h2 || c.ConnectionState().NegotiatedProtocol != "") {
			return openResult{}, fmt.Errorf("server chose %q, not %q", c.ConnectionState().NegotiatedProtocol, proto)
		}
		if o.h2 {
			clients[i], err = newH2Client(c, u, hname, hvalue)
			if err != nil {
				return openResult{}, err
			}
		} else {
			clients[i] = newH1Client(c, u, hname, hvalue)
		}
	}

	total := int(float64(o.rate) * o.dur.Seconds())
	due := make(chan time.Time, total)
	lat := make([][]time.Duration, o.conns)
	errs := make([]int, o.conns)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			for t := range due {
				if err := c.do(); err != nil {
					errs[i]++
					if errs[i] == 1 {
						fmt.Fprintln(os.Stderr, "benchrig open:", err)
					}
					continue
				}
				lat[i] = append(lat[i], time.Since(t))
			}
		})
	}
	start := time.Now()
	interval := time.Second / time.Duration(o.rate)
	for n := range total {
		if d := time.Until(start.Add(time.Duration(n) * interval)); d > 0 {
			time.Sleep(d)
		}
		due <- time.Now()
	}
	close(due)
	wg.Wait()
	all := slices.Concat(lat...)
	slices.Sort(all)
	failed := 0
	for _, e := range errs {
		failed += e
	}
	if len(all) == 0 {
		return openResult{requests: failed, failed: failed}, fmt.Errorf("no request succeeded (%d failed)", failed)
	}
	q := func(p float64) time.Duration { return all[min(len(all)-1, int(p*float64(len(all))))] }
	res := openResult{requests: len(all) + failed, failed: failed, p50: q(0.50), p99: q(0.99), max: all[len(all)-1]}
	if failed > 0 {
		return res, fmt.Errorf("%d of %d requests failed", failed, res.requests)
	}
	return res, nil
}

// A client sends one request on its connection and reads the whole answer.
type client interface{ do() error }

type h1Client struct {
	c   net.Conn
	br  *bufio.Reader
	req []byte
}

func newH1Client(c net.Conn, u *url.URL, hname, hvalue string) *h1Client {
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: benchrig\r\n", u.RequestURI(), u.Host)
	if hname != "" {
		req += hname + ": " + hvalue + "\r\n"
	}
	return &h1Client{c: c, br: bufio.NewReader(c), req: []byte(req + "\r\n")}
}

func (h *h1Client) do() error {
	if _, err := h.c.Write(h.req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(h.br, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}

type h2Client struct {
	fr       *http2.Framer
	bw       *bufio.Writer
	enc      *hpack.Encoder
	encBuf   bytes.Buffer
	dec      *hpack.Decoder
	status   string
	stream   uint32
	u        *url.URL
	hname    string
	hvalue   string
	consumed uint32
}

func newH2Client(c net.Conn, u *url.URL, hname, hvalue string) (*h2Client, error) {
	h := &h2Client{bw: bufio.NewWriter(c), u: u, hname: hname, hvalue: hvalue, stream: 1}
	h.fr = http2.NewFramer(h.bw, bufio.NewReader(c))
	h.enc = hpack.NewEncoder(&h.encBuf)
	h.dec = hpack.NewDecoder(4096, func(f hpack.HeaderField) {
		if f.Name == ":status" {
			h.status = f.Value
		}
	})
	h.bw.WriteString(http2.ClientPreface)
	if err := h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}); err != nil {
		return nil, err
	}
	if err := h.fr.WriteWindowUpdate(0, 1<<30); err != nil {
		return nil, err
	}
	return h, h.bw.Flush()
}

func (h *h2Client) do() error {
	h.encBuf.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", h.u.Host}, {":path", h.u.RequestURI()}, {"user-agent", "benchrig"}, {h.hname, h.hvalue}} {
		if f[0] != "" {
			h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
	}
	id := h.stream
	h.stream += 2
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.encBuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		return err
	}
	if err := h.bw.Flush(); err != nil {
		return err
	}
	h.status = ""
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return err
		}
		end := false
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				h.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				h.fr.WritePing(true, f.Data)
			}
		case *http2.GoAwayFrame:
			return fmt.Errorf("GOAWAY %v", f.ErrCode)
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return fmt.Errorf("RST_STREAM %v", f.ErrCode)
			}
		case *http2.HeadersFrame:
			if _, err := h.dec.Write(f.HeaderBlockFragment()); err != nil {
				return err
			}
			if !f.HeadersEnded() {
				return errors.New("CONTINUATION frames are not supported")
			}
			end = f.StreamID == id && f.StreamEnded()
		case *http2.DataFrame:
			// Give back the connection's flow-control window now and then.
			if h.consumed += uint32(len(f.Data())); h.consumed > 1<<20 {
				h.fr.WriteWindowUpdate(0, h.consumed)
				h.consumed = 0
			}
			end = f.StreamID == id && f.StreamEnded()
		}
		if end {
			break
		}
	}
	if err := h.bw.Flush(); err != nil {
		return err
	}
	if h.status != "200" {
		return fmt.Errorf("status %q", h.status)
	}
	return nil
}
