package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

// vmHWM is the process's peak resident set (Linux), or "n/a".
func vmHWM() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "n/a"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int
			if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kb); err == nil {
				return fmt.Sprintf("%.0f MiB", float64(kb)/1024)
			}
		}
	}
	return "n/a"
}

const (
	beginMarker = "<!-- bench-mailboxes:begin -->"
	endMarker   = "<!-- bench-mailboxes:end -->"
)

// writeSection replaces what lies between the markers of path; when they are absent, the section goes at
// the end of the bench-pipeline block, whose contents `make bench` keeps when it rewrites the file.
func writeSection(path, text string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	doc := string(b)
	block := beginMarker + "\n### Mailboxes at scale (`make bench-mailboxes`)\n\n" + text + endMarker
	i, j := strings.Index(doc, beginMarker), strings.Index(doc, endMarker)
	switch k := strings.Index(doc, pipelineEnd); {
	case i >= 0 && j > i:
		doc = doc[:i] + block + doc[j+len(endMarker):]
	case k >= 0:
		doc = doc[:k] + block + "\n\n" + doc[k:]
	default:
		doc = strings.TrimRight(doc, "\n") + "\n\n" + block + "\n"
	}
	return os.WriteFile(path, []byte(doc), 0o644)
}

// pipelineEnd closes the block of docs/benchmarks.md that `make bench` keeps (cmd/bench/report.go).
const pipelineEnd = "<!-- bench-pipeline:end -->"
