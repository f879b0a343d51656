package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// loadResult is one load phase against one process.
type loadResult struct {
	Concurrency int
	Measured    time.Duration // the measurement window (after warm-up)
	Completed   int64         // invocations answered inside the window
	Answered    int64         // every successful answer, warm-up and stragglers included
	Errors      int64         // non-200 answers or transport errors during warm-up or the window
	FirstError  string
	Latency     summary // of every invocation started inside the window
	Rate        rateSummary
	ServerCPU   time.Duration // CPU the process used inside the window
	RSS, HWM    int64         // VmRSS and VmHWM at the end of the phase
}

// CPUPerInvocation is the server's CPU time per answered invocation.
func (r loadResult) CPUPerInvocation() time.Duration {
	if r.Completed == 0 {
		return 0
	}
	return r.ServerCPU / time.Duration(r.Completed)
}

// drive keeps conc invocations of env in flight against p's /webhook for warm+dur without pause: a closed
// loop, each worker sending its next request as soon as the previous one is answered. Requests that start
// during the warm-up are not measured; throughput counts answers that arrive inside the window, latency is
// taken for every request that starts inside it (from before the request is written to after the answer's
// last byte is read).
func drive(ctx context.Context, p *proc, env []byte, conc int, warm, dur time.Duration) (loadResult, error) {
	tr := &http.Transport{
		MaxIdleConns: conc * 2, MaxIdleConnsPerHost: conc * 2, MaxConnsPerHost: 0,
		DisableCompression: true, IdleConnTimeout: time.Minute,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	url := p.base + "/webhook"

	const window = time.Second
	nWindows := int((dur + window - 1) / window)
	start := time.Now()
	measureFrom, measureTo := start.Add(warm), start.Add(warm+dur)

	type worker struct {
		lat      []time.Duration
		windows  []int64
		answered int64
		errors   int64
		firstErr string
	}
	workers := make([]*worker, conc)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{lat: make([]time.Duration, 0, 1<<14), windows: make([]int64, nWindows)}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := []byte("bench-" + strconv.Itoa(i) + "-")
			prefix := len(id)
			for n := 0; ; n++ {
				t := time.Now()
				if !t.Before(measureTo) || ctx.Err() != nil {
					return
				}
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(env))
				if err != nil {
					panic(err)
				}
				id = strconv.AppendInt(id[:prefix], int64(n), 10)
				setHostHeaders(req, string(id))
				resp, err := client.Do(req)
				status := 0
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				done := time.Now()
				if err != nil || status != http.StatusOK {
					if w.errors == 0 {
						w.firstErr = fmt.Sprintf("HTTP %d %v", status, err)
					}
					w.errors++
					continue
				}
				w.answered++
				if !t.Before(measureFrom) {
					w.lat = append(w.lat, done.Sub(t))
				}
				if !done.Before(measureFrom) && done.Before(measureTo) {
					w.windows[int(done.Sub(measureFrom)/window)]++
				}
			}
		}()
	}

	// Sample the server's CPU time at the window's edges.
	var cpuFrom, cpuTo time.Duration
	var cpuErr error
	sleepUntil(ctx, measureFrom)
	cpuFrom, cpuErr = cpuTime(p.pid())
	sleepUntil(ctx, measureTo)
	if cpuErr == nil {
		cpuTo, cpuErr = cpuTime(p.pid())
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return loadResult{}, err
	}
	if !p.alive() {
		return loadResult{}, p.exitError()
	}
	if cpuErr != nil {
		return loadResult{}, cpuErr
	}

	res := loadResult{Concurrency: conc, Measured: dur, ServerCPU: cpuTo - cpuFrom}
	var lat []time.Duration
	windows := make([]int64, nWindows)
	for _, w := range workers {
		lat = append(lat, w.lat...)
		for i, c := range w.windows {
			windows[i] += c
			res.Completed += c
		}
		if w.errors > 0 && res.Errors == 0 {
			res.FirstError = w.firstErr
		}
		res.Errors += w.errors
		res.Answered += w.answered
	}
	res.Latency = summarize(lat)
	res.Rate = rates(windows, window, res.Completed, dur)
	var err error
	if res.RSS, res.HWM, err = memStatus(p.pid()); err != nil {
		return loadResult{}, err
	}
	return res, nil
}

func sleepUntil(ctx context.Context, t time.Time) {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}

// waitReady polls GET / until p answers.
func waitReady(ctx context.Context, p *proc) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if !p.alive() {
			return p.exitError()
		}
		resp, err := client.Get(p.base + "/")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			client.CloseIdleConnections()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after 30 s: %v", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// invokeOnce posts env to p's /webhook and returns the status and body.
func invokeOnce(ctx context.Context, p *proc, env []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/webhook", bytes.NewReader(env))
	if err != nil {
		return 0, nil, err
	}
	setHostHeaders(req, "bench-check")
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}
