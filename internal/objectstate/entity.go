package objectstate

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// entityVersion is the schema version of a stored row.
const entityVersion = 1

// chunkBytes bounds one string property of a row. Table storage allows 64 KiB per string, counted in
// UTF-16 (32,768 code units); a UTF-8 string never has fewer bytes than UTF-16 code units, so 32,000
// bytes always fit.
const chunkBytes = 32_000

// The row's properties besides PartitionKey and RowKey. The state is split over state0, state1, … (as
// many as stateParts says) so that a big group or user fits Table's per-property limit.
const (
	propVersion     = "v"
	propSelectHash  = "selectHash"
	propReadAt      = "readAt"
	propSoftDeleted = "softDeleted"
	propStateHash   = "stateHash"
	propStateParts  = "stateParts"
	propStatePrefix = "state"
)

// encodeEntity turns a record into the JSON entity aztables sends. readAt is kept as an RFC 3339 string
// with nanoseconds: Edm.DateTime keeps only 100 ns, and a rounded readAt could make a newer read look
// equal to an older one.
func encodeEntity(partition string, r *Record) ([]byte, error) {
	e := map[string]any{
		"PartitionKey":  partition,
		"RowKey":        r.ID,
		propVersion:     entityVersion,
		propSelectHash:  r.SelectHash,
		propReadAt:      r.ReadAt.UTC().Format(time.RFC3339Nano),
		propSoftDeleted: r.SoftDeleted,
		propStateHash:   r.StateHash,
	}
	parts := splitUTF8(string(r.State), chunkBytes)
	e[propStateParts] = len(parts)
	for i, p := range parts {
		e[propStatePrefix+strconv.Itoa(i)] = p
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("objectstate: encode row %s/%s: %w", partition, r.ID, err)
	}
	return b, nil
}

// splitUTF8 cuts s into pieces of at most n bytes, never inside a character.
func splitUTF8(s string, n int) []string {
	var out []string
	for len(s) > 0 {
		i := min(n, len(s))
		for i < len(s) && i > 0 && !utf8.RuneStart(s[i]) {
			i--
		}
		out = append(out, s[:i])
		s = s[i:]
	}
	return out
}

var errCorruptRow = errors.New("row is not readable as this version's schema")

// decodeEntity reads a row as aztables returns it (with odata.etag when listed); the caller sets the
// record's Collection. A row it cannot read is returned with errCorruptRow and its ETag, so the caller
// can start that object over.
func decodeEntity(b []byte, etag string) (*Record, error) {
	var e map[string]any
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%w: %v", errCorruptRow, err)
	}
	str := func(k string) string { s, _ := e[k].(string); return s }
	if etag == "" {
		etag = str("odata.etag")
	}
	r := &Record{ID: str("RowKey"), ETag: etag}
	if v, _ := e[propVersion].(float64); v != entityVersion {
		return r, fmt.Errorf("%w: version %v", errCorruptRow, e[propVersion])
	}
	readAt, err := time.Parse(time.RFC3339Nano, str(propReadAt))
	if err != nil {
		return r, fmt.Errorf("%w: readAt: %v", errCorruptRow, err)
	}
	n, _ := e[propStateParts].(float64)
	var state strings.Builder
	for i := range int(n) {
		p, ok := e[propStatePrefix+strconv.Itoa(i)].(string)
		if !ok {
			return r, fmt.Errorf("%w: state part %d is missing", errCorruptRow, i)
		}
		state.WriteString(p)
	}
	r.SelectHash, r.StateHash, r.ReadAt = str(propSelectHash), str(propStateHash), readAt
	r.SoftDeleted, _ = e[propSoftDeleted].(bool)
	if state.Len() > 0 {
		r.State = json.RawMessage(state.String())
		if hashOf(r.State) != r.StateHash {
			return r, fmt.Errorf("%w: the state does not match its hash", errCorruptRow)
		}
	}
	return r, nil
}

// corruptRecord stands for a row that could not be read: with no select hash it never matches, so the
// next observation starts the object over and replaces the row (conditionally, on its ETag).
func corruptRecord(r *Record) *Record {
	return &Record{Collection: r.Collection, ID: r.ID, ETag: r.ETag}
}
