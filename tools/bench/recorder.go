package main

import (
	"math"
	"math/bits"
	"sort"
	"sync"
	"time"
)

// histogram is a log-linear latency histogram in the spirit of HdrHistogram:
// values below 2^precisionBits nanoseconds are counted exactly, larger ones in
// buckets whose width is 1/64 of their lower bound. Memory is therefore fixed
// (a few thousand counters cover nanoseconds to hours) no matter how many
// samples a run records, and any reported percentile is within ~1.6% of the
// true sample.
type histogram struct {
	counts []uint64
	total  uint64
	sum    float64 // nanoseconds; float so a long run cannot overflow
	min    int64
	max    int64
}

const (
	precisionBits = 7
	subBuckets    = 1 << precisionBits // exact range and bucket count per octave, doubled
	halfBuckets   = subBuckets / 2
	// 64-bit values need at most 64-precisionBits octaves above the exact range.
	histogramSize = subBuckets + (64-precisionBits)*halfBuckets
)

func newHistogram() *histogram {
	return &histogram{counts: make([]uint64, histogramSize), min: math.MaxInt64}
}

// bucketIndex maps a non-negative value to its counter.
func bucketIndex(v uint64) int {
	if v < subBuckets {
		return int(v)
	}
	shift := bits.Len64(v) - precisionBits // >= 1 here
	mantissa := v >> uint(shift)           // in [halfBuckets, subBuckets)
	return subBuckets + (shift-1)*halfBuckets + int(mantissa-halfBuckets)
}

// bucketUpper is the largest value that falls into bucket i; reporting the
// upper edge keeps percentiles conservative (never better than measured).
func bucketUpper(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	shift := (i-subBuckets)/halfBuckets + 1
	mantissa := uint64((i-subBuckets)%halfBuckets + halfBuckets)
	return (mantissa+1)<<uint(shift) - 1
}

func (h *histogram) record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[bucketIndex(uint64(v))]++
	h.total++
	h.sum += float64(v)
	if v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.sum += o.sum
	if o.total > 0 {
		h.min = min(h.min, o.min)
		h.max = max(h.max, o.max)
	}
}

// percentile returns the value at or below which p percent of the samples
// fall (nearest-rank), clamped to the observed min and max.
func (h *histogram) percentile(p float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(p / 100 * float64(h.total)))
	rank = max(rank, 1)
	rank = min(rank, h.total)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := int64(bucketUpper(i))
			return time.Duration(min(max(v, h.min), h.max))
		}
	}
	return time.Duration(h.max)
}

func (h *histogram) mean() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.total))
}

// maxErrorSamples bounds how many error messages each operation keeps.
const maxErrorSamples = 5

// opStats is everything recorded for one named operation.
type opStats struct {
	mu           sync.Mutex
	latency      *histogram // successes and failures alike
	errors       uint64
	errorSamples []string
	validateTime time.Duration // client CPU spent validating responses
	validated    uint64
}

// Recorder collects latencies per operation. It is safe for concurrent use;
// one Recorder covers one measured phase of one workload.
type Recorder struct {
	mu  sync.RWMutex
	ops map[string]*opStats
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	return &Recorder{ops: map[string]*opStats{}}
}

func (r *Recorder) op(name string) *opStats {
	r.mu.RLock()
	s := r.ops[name]
	r.mu.RUnlock()
	if s != nil {
		return s
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s = r.ops[name]; s == nil {
		s = &opStats{latency: newHistogram()}
		r.ops[name] = s
	}
	return s
}

// Record adds one sample. A non-nil err marks the sample as an error; its
// latency is still part of the percentiles so failures cannot flatter them.
func (r *Recorder) Record(op string, d time.Duration, err error) {
	s := r.op(op)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency.record(d)
	if err == nil {
		return
	}
	s.errors++
	if len(s.errorSamples) < maxErrorSamples {
		s.errorSamples = append(s.errorSamples, err.Error())
	}
}

// recordValidation accounts for the client-side cost of schema validation.
func (r *Recorder) recordValidation(op string, d time.Duration) {
	s := r.op(op)
	s.mu.Lock()
	s.validateTime += d
	s.validated++
	s.mu.Unlock()
}

// OpSummary is the reported figure set of one operation (or the total).
type OpSummary struct {
	Op             string   `json:"op"`
	Count          uint64   `json:"count"`
	Errors         uint64   `json:"errors"`
	RPS            float64  `json:"rps"`
	MeanMs         float64  `json:"mean_ms"`
	P50Ms          float64  `json:"p50_ms"`
	P95Ms          float64  `json:"p95_ms"`
	P99Ms          float64  `json:"p99_ms"`
	MaxMs          float64  `json:"max_ms"`
	ValidateMeanUs float64  `json:"validate_mean_us,omitempty"`
	ErrorSamples   []string `json:"error_samples,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func summarize(name string, h *histogram, errors uint64, elapsed time.Duration) OpSummary {
	s := OpSummary{Op: name, Count: h.total, Errors: errors}
	if elapsed > 0 {
		s.RPS = float64(h.total) / elapsed.Seconds()
	}
	if h.total > 0 {
		s.MeanMs = ms(h.mean())
		s.P50Ms = ms(h.percentile(50))
		s.P95Ms = ms(h.percentile(95))
		s.P99Ms = ms(h.percentile(99))
		s.MaxMs = ms(time.Duration(h.max))
	}
	return s
}

// Summaries returns one summary per operation, sorted by name, and the total
// over all operations.
func (r *Recorder) Summaries(elapsed time.Duration) ([]OpSummary, OpSummary) {
	r.mu.RLock()
	names := make([]string, 0, len(r.ops))
	for n := range r.ops {
		names = append(names, n)
	}
	r.mu.RUnlock()
	sort.Strings(names)

	all := newHistogram()
	var allErrors uint64
	var allValidate time.Duration
	var allValidated uint64
	out := make([]OpSummary, 0, len(names))
	for _, n := range names {
		s := r.op(n)
		s.mu.Lock()
		h := newHistogram()
		h.merge(s.latency)
		sum := summarize(n, h, s.errors, elapsed)
		if s.validated > 0 {
			sum.ValidateMeanUs = float64(s.validateTime) / float64(s.validated) / float64(time.Microsecond)
		}
		sum.ErrorSamples = append([]string(nil), s.errorSamples...)
		allErrors += s.errors
		allValidate += s.validateTime
		allValidated += s.validated
		s.mu.Unlock()
		all.merge(h)
		out = append(out, sum)
	}
	total := summarize("total", all, allErrors, elapsed)
	if allValidated > 0 {
		total.ValidateMeanUs = float64(allValidate) / float64(allValidated) / float64(time.Microsecond)
	}
	return out, total
}
