package main

import (
	"errors"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"
)

func TestBucketsRoundTrip(t *testing.T) {
	// Every value must land in a bucket whose upper edge is >= the value and
	// within the advertised relative error.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		v := rng.Uint64N(1 << 40)
		i := bucketIndex(v)
		if i < 0 || i >= histogramSize {
			t.Fatalf("value %d: index %d out of range", v, i)
		}
		up := bucketUpper(i)
		if up < v {
			t.Fatalf("value %d: bucket upper %d below it", v, up)
		}
		if v >= subBuckets && float64(up-v)/float64(v) > 1.0/halfBuckets {
			t.Fatalf("value %d: bucket upper %d off by more than 1/%d", v, up, halfBuckets)
		}
	}
	if i := bucketIndex(math.MaxUint64); i != histogramSize-1 {
		t.Fatalf("max value index %d, want %d", i, histogramSize-1)
	}
	for v := uint64(0); v < subBuckets; v++ {
		if bucketUpper(bucketIndex(v)) != v {
			t.Fatalf("small value %d not exact", v)
		}
	}
}

func TestPercentilesMatchSortedSamples(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	h := newHistogram()
	samples := make([]time.Duration, 0, 50000)
	for range cap(samples) {
		// Log-normal-ish latencies from ~100µs to ~1s, like real ones.
		d := time.Duration(math.Exp(rng.NormFloat64()*1.5+math.Log(2e6))) + time.Microsecond
		samples = append(samples, d)
		h.record(d)
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	for _, p := range []float64{1, 50, 90, 95, 99, 99.9, 100} {
		rank := int(math.Ceil(p / 100 * float64(len(samples))))
		want := samples[rank-1]
		got := h.percentile(p)
		if got < want || float64(got-want)/float64(want) > 1.0/halfBuckets {
			t.Errorf("p%v = %v, exact %v", p, got, want)
		}
	}
	if got := h.percentile(100); got != samples[len(samples)-1] {
		t.Errorf("p100 = %v, want max %v", got, samples[len(samples)-1])
	}
}

func TestPercentilesSmallCounts(t *testing.T) {
	h := newHistogram()
	if h.percentile(50) != 0 || h.mean() != 0 {
		t.Fatal("empty histogram must report zeros")
	}
	for _, ms := range []int{10, 20, 30, 40} {
		h.record(time.Duration(ms) * time.Millisecond)
	}
	cases := map[float64]time.Duration{25: 10 * time.Millisecond, 50: 20 * time.Millisecond, 75: 30 * time.Millisecond, 99: 40 * time.Millisecond}
	for p, want := range cases {
		got := h.percentile(p)
		if got < want || float64(got-want)/float64(want) > 1.0/halfBuckets {
			t.Errorf("p%v = %v, want ~%v", p, got, want)
		}
	}
	if h.mean() != 25*time.Millisecond {
		t.Errorf("mean %v, want 25ms", h.mean())
	}
}

func TestRecorderCountsErrorsInFigures(t *testing.T) {
	r := NewRecorder()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				var err error
				if i%100 == 0 {
					err = errors.New("boom")
				}
				r.Record("op", time.Duration(w*1000+i)*time.Microsecond, err)
			}
		})
	}
	wg.Wait()
	r.Record("other", time.Millisecond, nil)
	ops, total := r.Summaries(2 * time.Second)
	if len(ops) != 2 || ops[0].Op != "op" || ops[1].Op != "other" {
		t.Fatalf("ops = %+v", ops)
	}
	op := ops[0]
	if op.Count != 8000 || op.Errors != 80 {
		t.Errorf("count %d errors %d, want 8000 and 80", op.Count, op.Errors)
	}
	if len(op.ErrorSamples) != maxErrorSamples {
		t.Errorf("%d error samples kept, want %d", len(op.ErrorSamples), maxErrorSamples)
	}
	if op.RPS != 4000 {
		t.Errorf("rps %v, want 4000", op.RPS)
	}
	if total.Count != 8001 || total.Errors != 80 {
		t.Errorf("total %+v", total)
	}
	if total.MaxMs < 7.99 {
		t.Errorf("total max %vms, want ~8ms", total.MaxMs)
	}
}
