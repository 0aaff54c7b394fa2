package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// procMemory reads VmRSS and VmHWM (peak resident set since the process
// started), in kB, from /proc/<pid>/status.
func procMemory(pid int) (rssKB, hwmKB int64, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		fields := strings.Fields(val)
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status %s: %w", pid, key, err)
		}
		if key == "VmRSS" {
			rssKB = n
		} else {
			hwmKB = n
		}
	}
	return rssKB, hwmKB, sc.Err()
}

// rssSampler polls the server's VmRSS while workloads run, because VmHWM
// alone includes start-up peaks (imports, migrations) that say nothing about
// a workload. A nil sampler (no -pid) does nothing.
type rssSampler struct {
	pid  int
	mu   sync.Mutex
	max  int64
	stop chan struct{}
	done chan struct{}
}

const rssInterval = 100 * time.Millisecond

func startRSSSampler(pid int) *rssSampler {
	if pid <= 0 {
		return nil
	}
	s := &rssSampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(rssInterval)
		defer t.Stop()
		for {
			s.sample()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) sample() {
	rss, _, err := procMemory(s.pid)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.max = max(s.max, rss)
	s.mu.Unlock()
}

// reset starts a new peak window (one per measured phase).
func (s *rssSampler) reset() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.max = 0
	s.mu.Unlock()
	s.sample()
}

// peak is the largest VmRSS seen since reset, sampled once more now so a
// phase shorter than the interval still has a figure.
func (s *rssSampler) peak() int64 {
	if s == nil {
		return 0
	}
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max
}

func (s *rssSampler) close() {
	if s == nil {
		return
	}
	close(s.stop)
	<-s.done
}
