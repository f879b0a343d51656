package objectstate

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/graphwebhooks/graph-webhooks-go/internal/checkpoint"
)

// Mode is EVENTS_UNCHANGED: what happens to an event that carries nothing new.
type Mode string

const (
	// Suppress drops events whose state equals the stored one, or that were read before the stored state.
	Suppress Mode = "suppress"
	// Emit writes every event; Changed and Previous are still computed.
	Emit Mode = "emit"
)

// Change types of an observation, as in the change event.
const (
	Updated = "updated"
	Deleted = "deleted"
)

// MaxStateBytes is the largest canonical state (UTF-8 JSON) a row keeps. Table storage counts strings in
// UTF-16, so this many ASCII bytes take twice as much of the 1 MiB entity limit; 400,000 leaves room for
// the other properties. A bigger state is kept as its hash only: equal states are still recognised, but
// an event after it carries no changed/previous.
const MaxStateBytes = 400_000

// Observation is one state of an object as the pipeline read it (or learnt of its deletion).
type Observation struct {
	Collection string // what kind of object: "users", "groups", …; rows are partitioned by it (see Shards)
	ID         string // the object id; the row key is its lower-case form
	// Properties are the selected properties as read. Keys containing '@' are annotations, not state
	// (@odata.type, @removed, and members@delta, which feeds the event's members delta): they are ignored.
	// Nil means nothing was read: a permanent delete, or a soft delete whose properties are unknown.
	Properties map[string]any
	// Select is the select the properties were read with (GRAPH_USER_SELECT or GRAPH_GROUP_SELECT); order
	// and case do not matter.
	Select      []string
	ReadAt      time.Time // when the properties were read (or the deletion learnt)
	ChangeType  string    // Updated or Deleted
	SoftDeleted bool      // with Deleted: the object is in the directory's deleted items
}

// Record is the stored row of one object: its last emitted state.
type Record struct {
	Collection string
	ID         string // lower-case
	// State is the canonical JSON object of the state (see Canonical), or nil when it was larger than
	// MaxStateBytes and only StateHash is kept.
	State      json.RawMessage
	StateHash  string // hex SHA-256 (128 bits) of the canonical state
	SelectHash string // checkpoint.SelectHash of the select the state was read with
	ReadAt     time.Time
	// SoftDeleted marks an object in the directory's deleted items: the row is kept so that a restore is
	// compared with the state before the deletion.
	SoftDeleted bool
	// ETag is the row's entity tag as read; "" for a row not stored yet.
	ETag string
}

// Reason says what Decide made of an observation.
type Reason string

const (
	ReasonNew           Reason = "new"            // no stored state: emitted without changed/previous
	ReasonChanged       Reason = "changed"        // the state differs from the stored one: emitted
	ReasonSelectChanged Reason = "select-changed" // stored under another select: emitted, starting over
	ReasonRestored      Reason = "restored"       // an update of an object stored as soft-deleted: emitted
	ReasonDeleted       Reason = "deleted"        // deletes are always emitted
	ReasonUnchanged     Reason = "unchanged"      // equal to the stored state: suppressed (unless Emit)
	ReasonOlder         Reason = "older"          // read before the stored state: suppressed (unless Emit)
)

// Decision is what to do with one observation: whether to write its event, what the event says changed,
// and how the row moves.
type Decision struct {
	Observation Observation
	Emit        bool
	Reason      Reason
	// Changed names the properties whose values differ from the stored state, sorted; Previous holds their
	// stored values (nil for a property that was absent or null). Both are nil when there is no earlier
	// state under the same select to compare with; Changed is empty, not nil, for a restore or a delete
	// whose properties did not change.
	Changed  []string
	Previous map[string]any
	// Write says whether Commit changes the row; Row is the row after it (nil: no row).
	Write bool
	Row   *Record

	base   string // ETag of the row this decision was made against; "" when there was none
	legacy string // ETag of the object's row in the one-partition layout, when it was read from there
}

// ErrInvalid is wrapped by the error Decide returns for an observation that cannot be stored.
var ErrInvalid = errors.New("objectstate: invalid observation")

// Decide is the pure decision for one observation given the stored row (nil when there is none).
//
// Rules: an update read before the stored readAt is suppressed and leaves the row alone (per object,
// events never go back in time); an update equal to the stored state is suppressed, and the row's readAt
// moves forward so that a later-arriving read from in between is recognised as older; anything else is
// emitted and becomes the row. A changed select starts over: emitted without changed/previous, row
// replaced. Deletes are always emitted: a permanent one ends the row, a soft one keeps it, marked (unless
// it was read before the stored state). With mode Emit every observation is emitted; the row moves the
// same way.
func Decide(stored *Record, o Observation, mode Mode) (Decision, error) {
	if err := o.validate(); err != nil {
		return Decision{}, err
	}
	d := Decision{Observation: o}
	if stored != nil {
		d.base = stored.ETag
	}
	var next *Record
	if o.Properties != nil {
		var err error
		if next, err = newRecord(o); err != nil {
			return Decision{}, err
		}
	}
	sameSelect := stored != nil && stored.SelectHash == checkpoint.SelectHash(o.Select)
	older := stored != nil && o.ReadAt.Before(stored.ReadAt)
	if sameSelect && next != nil {
		d.Changed, d.Previous = diff(stored.State, next.State)
	}

	switch {
	case o.ChangeType == Deleted && !o.SoftDeleted:
		d.Emit, d.Reason = true, ReasonDeleted
		d.Write = stored != nil // object ids are never reused: the row ends whatever its readAt
	case o.ChangeType == Deleted:
		d.Emit, d.Reason = true, ReasonDeleted
		if older {
			d.Row = stored
			break
		}
		if next == nil {
			// Nothing was read: keep the last known state, marked.
			if stored != nil && sameSelect {
				r := *stored
				r.ETag = ""
				next = &r
			} else {
				// No state known: a restore is then emitted without changed/previous.
				next = &Record{Collection: o.Collection, ID: rowKey(o.ID), SelectHash: checkpoint.SelectHash(o.Select)}
			}
			next.ReadAt = o.ReadAt
		}
		next.SoftDeleted = true
		d.Row, d.Write = next, true
	case stored == nil:
		d.Emit, d.Reason = true, ReasonNew
		d.Row, d.Write = next, true
	case older:
		d.Emit, d.Reason = mode == Emit, ReasonOlder
		d.Row = stored
	case !sameSelect:
		d.Emit, d.Reason = true, ReasonSelectChanged
		d.Row, d.Write = next, true
	case stored.SoftDeleted:
		d.Emit, d.Reason = true, ReasonRestored
		d.Row, d.Write = next, true
	case stored.StateHash == next.StateHash:
		d.Emit, d.Reason = mode == Emit, ReasonUnchanged
		d.Row, d.Write = next, o.ReadAt.After(stored.ReadAt)
		if !d.Write {
			d.Row = stored
		}
	default:
		d.Emit, d.Reason = true, ReasonChanged
		d.Row, d.Write = next, true
	}
	if !sameSelect || stored.State == nil || next == nil {
		d.Changed, d.Previous = nil, nil
	}
	return d, nil
}

func (o *Observation) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s/%s: %s", ErrInvalid, o.Collection, o.ID, fmt.Sprintf(format, args...))
	}
	if err := checkKey(o.Collection); err != nil {
		return bad("collection %v", err)
	}
	if err := checkKey(o.ID); err != nil {
		return bad("id %v", err)
	}
	if o.ReadAt.IsZero() {
		return bad("no readAt")
	}
	switch o.ChangeType {
	case Updated:
		if o.Properties == nil {
			return bad("an update without properties")
		}
		if o.SoftDeleted {
			return bad("softDeleted is only for deletes")
		}
	case Deleted:
	default:
		return bad("changeType %q is neither %s nor %s", o.ChangeType, Updated, Deleted)
	}
	return nil
}

// checkKey applies Table storage's rules for PartitionKey and RowKey values: at most 1 KiB, none of
// / \ # ? or control characters.
func checkKey(k string) error {
	switch {
	case k == "":
		return errors.New("is empty")
	case len(k) > 1024:
		return errors.New("is longer than 1 KiB")
	case strings.ContainsAny(k, `/\#?`) || strings.ContainsFunc(k, func(r rune) bool { return r < 0x20 || (r >= 0x7f && r <= 0x9f) }):
		return errors.New(`contains / \ # ? or a control character`)
	}
	return nil
}

func rowKey(id string) string { return strings.ToLower(id) }

func newRecord(o Observation) (*Record, error) {
	state, err := Canonical(o.Properties)
	if err != nil {
		return nil, fmt.Errorf("%w: %s/%s: %v", ErrInvalid, o.Collection, o.ID, err)
	}
	r := &Record{
		Collection: o.Collection,
		ID:         rowKey(o.ID),
		StateHash:  hashOf(state),
		SelectHash: checkpoint.SelectHash(o.Select),
		ReadAt:     o.ReadAt,
	}
	if len(state) <= MaxStateBytes {
		r.State = state
	}
	return r, nil
}

func hashOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// diff compares two canonical states key by key. It returns the sorted names of the properties whose
// values differ and their values in old (nil for a property old lacks).
func diff(old, cur json.RawMessage) ([]string, map[string]any) {
	var a, b map[string]json.RawMessage
	if json.Unmarshal(old, &a) != nil || json.Unmarshal(cur, &b) != nil {
		return nil, nil
	}
	changed := []string{}
	previous := map[string]any{}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			changed = append(changed, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			changed = append(changed, k)
		}
	}
	slices.Sort(changed)
	for _, k := range changed {
		previous[k] = nil
		if v, ok := a[k]; ok {
			previous[k] = decodeValue(v)
		}
	}
	return changed, previous
}

func decodeValue(raw json.RawMessage) any {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil {
		return nil
	}
	return v
}

// Canonical encodes properties as the canonical JSON object the state is compared and stored in: keys
// sorted; annotations (keys containing '@') left out; null and absent the same at every depth (a property
// set to null is left out, since Graph returns unset properties as null or omits them depending on the
// endpoint); numbers in one spelling (1, 1.0 and 1e0 are equal; decimals are compared as float64).
// Array order is kept: it is part of the value.
func Canonical(properties map[string]any) ([]byte, error) {
	raw, err := json.Marshal(properties)
	if err != nil {
		return nil, fmt.Errorf("properties are not JSON: %w", err)
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var tree map[string]any
	if err := d.Decode(&tree); err != nil {
		return nil, fmt.Errorf("properties are not a JSON object: %w", err)
	}
	for k := range tree {
		if strings.Contains(k, "@") {
			delete(tree, k)
		}
	}
	canon, err := canonicalValue(tree)
	if err != nil {
		return nil, err
	}
	if canon == nil {
		canon = map[string]any{}
	}
	return json.Marshal(canon)
}

func canonicalValue(v any) (any, error) {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			c, err := canonicalValue(e)
			if err != nil {
				return nil, err
			}
			if c == nil {
				delete(t, k)
				continue
			}
			t[k] = c
		}
		return t, nil
	case []any:
		for i, e := range t {
			c, err := canonicalValue(e)
			if err != nil {
				return nil, err
			}
			t[i] = c
		}
		return t, nil
	case json.Number:
		return canonicalNumber(t)
	}
	return v, nil
}

// canonicalNumber spells a JSON number one way: integers without exponent or fraction, exactly (ids such
// as Graph's sequence numbers exceed 2^53); other numbers as the shortest float64 form.
func canonicalNumber(n json.Number) (json.Number, error) {
	s := n.String()
	if !strings.ContainsAny(s, ".eE") {
		i, ok := new(big.Int).SetString(s, 10)
		if !ok {
			return "", fmt.Errorf("number %q is not valid", s)
		}
		return json.Number(i.String()), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return "", fmt.Errorf("number %q is not valid", s)
	}
	if math.IsInf(f, 0) {
		return json.Number(s), nil // out of float64's range: kept as spelt
	}
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return json.Number(strconv.FormatInt(int64(f), 10)), nil
	}
	return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), nil
}
