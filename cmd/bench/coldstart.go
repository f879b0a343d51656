package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// coldRun is one cold start: from exec to the first answer to GET / (what the host waits for, docs/host-protocol.md §2.2), and to
// the answer of the first invocation, Graph's validation handshake.
type coldRun struct {
	Ready, Handshake time.Duration
}

// coldStart execs bin, polls GET / every poll until it answers, posts the handshake envelope, checks the
// answer, and kills the process.
func coldStart(ctx context.Context, bin string, settings map[string]string, poll time.Duration) (coldRun, error) {
	port, err := freePort()
	if err != nil {
		return coldRun{}, err
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	env := handshakeEnvelope(validationToken)

	t0 := time.Now()
	p, err := startOn(bin, settings, port)
	if err != nil {
		return coldRun{}, err
	}
	defer p.stop()

	var run coldRun
	deadline := t0.Add(30 * time.Second) // the host's InitializationTimeout
	for {
		if !p.alive() {
			return coldRun{}, p.exitError()
		}
		if time.Now().After(deadline) {
			return coldRun{}, fmt.Errorf("%s: not ready after 30 s", bin)
		}
		if err := ctx.Err(); err != nil {
			return coldRun{}, err
		}
		resp, err := client.Get(p.base + "/")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			run.Ready = time.Since(t0) // any answer counts as ready, as for the host
			break
		}
		time.Sleep(poll)
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/webhook", bytes.NewReader(env))
	if err != nil {
		return coldRun{}, err
	}
	setHostHeaders(req, "cold-start")
	resp, err := client.Do(req)
	if err != nil {
		return coldRun{}, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	run.Handshake = time.Since(t0)
	if err != nil {
		return coldRun{}, err
	}
	if err := checkHandshake(resp.StatusCode, body); err != nil {
		return coldRun{}, fmt.Errorf("%s: %w", bin, err)
	}
	return run, nil
}

// setHostHeaders sets the headers the host sends with every invocation (docs/host-protocol.md §3.1).
func setHostHeaders(req *http.Request, id string) {
	req.Header.Set("X-Azure-Functions-InvocationId", id)
	req.Header.Set("X-Azure-Functions-HostVersion", "4.1040.300.0")
	req.Header.Set("User-Agent", "Azure-Functions-Host/4.1040.300.0")
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
}

// coldStarts runs n cold starts of each binary, interleaved (a, b, a, b, …) so that drift in the machine's
// state affects both alike. One unmeasured start of each comes first, to fault the binaries into the page
// cache as a deployed app's would be after its first start.
func coldStarts(ctx context.Context, bins []string, settings map[string]string, n int, poll time.Duration) ([][]coldRun, error) {
	out := make([][]coldRun, len(bins))
	for i := -1; i < n; i++ {
		for j, bin := range bins {
			r, err := coldStart(ctx, bin, settings, poll)
			if err != nil {
				return nil, err
			}
			if i >= 0 {
				out[j] = append(out[j], r)
			}
		}
	}
	return out, nil
}
