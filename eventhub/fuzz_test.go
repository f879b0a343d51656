package eventhub

import (
	"encoding/json"
	"testing"
)

// FuzzEvents feeds arbitrary trigger values to the batch decoder: it must not panic, must end, must yield
// either a body or an error for every element, and a body it yields is never empty.
func FuzzEvents(f *testing.F) {
	body := collection(change(1))
	for _, seed := range []string{
		string(hostBatch(body, validationEvent)),
		string(mustJSON([]string{body})),
		`[` + body + `,null,1,[2]]`,
		string(mustJSON(string(mustJSON(body)))),
		`"eyJ2YWx1ZSI6W119"`,
		`["eyJ2YWx1ZSI6W119"]`,
		`"\"\\\"\\\\\\\"\\\"\""`,
		`[`, `]`, `{`, `""`, `null`, `123`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		events, err := Events(json.RawMessage(data))
		if err != nil {
			return
		}
		n := 0
		for b, err := range events {
			n++
			if err == nil && len(b) == 0 {
				t.Fatalf("empty body without an error from %q", data)
			}
			if n > len(data)+1 {
				t.Fatalf("more events (%d) than input bytes", n)
			}
		}
		_ = ReadPosition(map[string]json.RawMessage{"PartitionContext": data, "SequenceNumberArray": data})
	})
}
