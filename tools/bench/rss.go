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
	rss, err := treeRSS(s.pid)
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

// treeRSS is the VmRSS of pid plus that of all its descendants, in kB:
// `prefect server start` may serve from child processes, and a comparison
// must count every process that does the server's work.
func treeRSS(pid int) (int64, error) {
	total, _, err := procMemory(pid)
	if err != nil {
		return 0, err
	}
	for _, child := range childPIDs(pid) {
		// A child can exit between listing and reading; it then holds no memory.
		if rss, err := treeRSS(child); err == nil {
			total += rss
		}
	}
	return total, nil
}

// childPIDs lists the direct children of pid from every one of its threads'
// /proc children files (a child belongs to the thread that forked it).
func childPIDs(pid int) []int {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, t := range tasks {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(raw)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// treeAnon is RssAnon (the resident pages backed by no file: heaps, stacks)
// of pid and its descendants, in kB. VmRSS also counts the mapped pages of
// the executable and its libraries, which the page cache shares and can
// reclaim; both figures are reported.
func treeAnon(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	var total int64
	for _, line := range strings.Split(string(raw), "\n") {
		if val, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			if fields := strings.Fields(val); len(fields) > 0 {
				if total, err = strconv.ParseInt(fields[0], 10, 64); err != nil {
					return 0, err
				}
			}
		}
	}
	for _, child := range childPIDs(pid) {
		if n, err := treeAnon(child); err == nil {
			total += n
		}
	}
	return total, nil
}
