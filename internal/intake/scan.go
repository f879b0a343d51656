package intake

import (
	"bytes"
	"encoding/json"
	"errors"
)

// member is one name/value pair of a JSON object, as offsets into the object's text: the name with its
// quotes, then the value.
type member struct {
	nameStart, nameEnd, valueStart, valueEnd int
}

// errTooMany says an object has more members than the caller allows.
var errTooMany = errors.New("too many members")

// members appends the members of obj, a valid JSON object, to ms, at most limit of them. It allocates
// nothing but ms's growth: the intake runs it once per element of the collection.
func members(obj []byte, ms []member, limit int) ([]member, error) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return ms, nil
	}
	start := len(ms)
	i = skipSpace(obj, i+1)
	for i < len(obj) && obj[i] == '"' {
		var m member
		m.nameStart, m.nameEnd = i, stringEnd(obj, i)
		i = skipSpace(obj, m.nameEnd)
		i = skipSpace(obj, i+1) // past ':'
		m.valueStart, m.valueEnd = i, valueEnd(obj, i)
		if len(ms)-start == limit {
			return ms, errTooMany
		}
		ms = append(ms, m)
		i = skipSpace(obj, m.valueEnd)
		if i < len(obj) && obj[i] == ',' {
			i = skipSpace(obj, i+1)
		}
	}
	return ms, nil
}

// name returns a member's name as encoding/json reads it: unquoted, escapes resolved. Only a name
// holding an escape is decoded (and allocates); the others are slices of obj.
func (m member) name(obj []byte) []byte {
	q := obj[m.nameStart+1 : m.nameEnd-1]
	if bytes.IndexByte(q, '\\') < 0 {
		return q
	}
	var s string
	if json.Unmarshal(obj[m.nameStart:m.nameEnd], &s) != nil {
		return q
	}
	return []byte(s)
}

// valueEnd returns the index just past the JSON value starting at b[i].
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = stringEnd(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	for i < len(b) && !isDelimiter(b[i]) {
		i++
	}
	return i
}

func isDelimiter(c byte) bool {
	switch c {
	case ',', '}', ']', ' ', '\t', '\r', '\n':
		return true
	}
	return false
}

// stringEnd returns the index just past the JSON string starting at b[i] (a quote).
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
