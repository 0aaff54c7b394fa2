package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// apiVersion is what the Prefect 3.9.1 client sends in X-PREFECT-API-VERSION.
const apiVersion = "0.8.4"

// maxErrorText bounds one error sample; kin-openapi errors embed whole schemas.
const maxErrorText = 600

// Client issues API calls for workloads, checks every response and records
// its latency into the current phase's Recorder.
type Client struct {
	base      string
	http      *http.Client
	validator *Validator // nil when validation is off
	rec       atomic.Pointer[Recorder]
	sampled   sync.Map // op -> *atomic.Uint64, for Request.ValidateOneIn
}

// NewClient returns a client whose connection pool holds at least one idle
// keep-alive connection per worker, so a run measures the server rather than
// TCP handshakes.
func NewClient(baseURL string, concurrency int, v *Validator) *Client {
	tr := &http.Transport{
		Proxy: nil, // a benchmark must hit the server directly
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:        concurrency * 2,
		MaxIdleConnsPerHost: concurrency * 2,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   false,
	}
	return &Client{
		base:      strings.TrimSuffix(baseURL, "/"),
		http:      &http.Client{Transport: tr, Timeout: 60 * time.Second},
		validator: v,
	}
}

// SetRecorder switches where samples go; nil discards them (setup traffic).
func (c *Client) SetRecorder(r *Recorder) { c.rec.Store(r) }

// Record adds a sample for an operation that is not a plain HTTP call (a
// websocket round trip, for instance). Samples taken after ctx ended are
// dropped: they are interrupted requests, not server failures.
func (c *Client) Record(ctx context.Context, op string, d time.Duration, err error) {
	if ctx.Err() != nil {
		return
	}
	if r := c.rec.Load(); r != nil {
		r.Record(op, d, err)
	}
}

// HTTPError describes a response that did not meet expectations.
type HTTPError struct {
	Method, Path string
	Status       int
	Want         []int
	Reason       string
}

func (e *HTTPError) Error() string {
	msg := fmt.Sprintf("%s %s: status %d (want %v)", e.Method, e.Path, e.Status, e.Want)
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	if len(msg) > maxErrorText {
		msg = msg[:maxErrorText] + "..."
	}
	return msg
}

// Request is one API call of a workload.
type Request struct {
	Op     string // name the latency is recorded under
	Method string
	Path   string // relative to the API base URL, e.g. /flows/
	Body   any    // marshalled as JSON when non-nil
	Expect []int  // acceptable statuses
	Out    any    // the response body is decoded into it when non-nil
	// Check, when set, runs after decoding and can reject a response that is
	// valid by schema but wrong for the workload (another flow's id, say).
	Check func(status int) error
	// ValidateOneIn > 1 validates the schema of one response in this many
	// for the operation (every response is still status-checked, decoded
	// and Checked): kin-openapi needs ~100 ms of client CPU for a page of
	// 200 runs, which on a small machine would throttle the server under
	// test rather than measure it.
	ValidateOneIn int
}

// shouldValidate reports whether this response of r gets schema validation.
func (c *Client) shouldValidate(r Request) bool {
	if c.validator == nil {
		return false
	}
	if r.ValidateOneIn <= 1 {
		return true
	}
	v, _ := c.sampled.LoadOrStore(r.Op, new(atomic.Uint64))
	return v.(*atomic.Uint64).Add(1)%uint64(r.ValidateOneIn) == 1
}

// Do sends the request, requires one of the expected statuses, a response
// valid against the document and a passing Check, and records the latency
// under Op whether it succeeded or not. The status lets a workload tell 200
// from 201.
func (c *Client) Do(ctx context.Context, r Request) (int, error) {
	var payload []byte
	if r.Body != nil {
		var err error
		if payload, err = json.Marshal(r.Body); err != nil {
			return 0, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, c.base+r.Path, bytes.NewReader(payload))
	if err != nil {
		return 0, err
	}
	if r.Body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-PREFECT-API-VERSION", apiVersion)

	start := time.Now()
	resp, err := c.http.Do(req)
	var respBody []byte
	if err == nil {
		respBody, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	elapsed := time.Since(start)
	if err != nil {
		err = fmt.Errorf("%s %s: %w", r.Method, r.Path, err)
		c.Record(ctx, r.Op, elapsed, err)
		return 0, err
	}

	status := resp.StatusCode
	fail := func(reason string) (int, error) {
		err := &HTTPError{Method: r.Method, Path: r.Path, Status: status, Want: r.Expect, Reason: reason}
		c.Record(ctx, r.Op, elapsed, err)
		return status, err
	}
	if !slices.Contains(r.Expect, status) {
		return fail(strings.TrimSpace(string(respBody)))
	}
	if c.shouldValidate(r) {
		vStart := time.Now()
		verr := c.validator.Validate(ctx, req, status, resp.Header, respBody)
		if rec := c.rec.Load(); rec != nil {
			rec.recordValidation(r.Op, time.Since(vStart))
		}
		if verr != nil {
			return fail("invalid response: " + verr.Error())
		}
	}
	if r.Out != nil {
		if err := json.Unmarshal(respBody, r.Out); err != nil {
			return fail("decode: " + err.Error())
		}
	}
	if r.Check != nil {
		if err := r.Check(status); err != nil {
			return fail(err.Error())
		}
	}
	c.Record(ctx, r.Op, elapsed, nil)
	return status, nil
}
