package fakehost

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// This file holds the .NET/Newtonsoft value conventions the host applies on both sides of the protocol
// (docs/host-protocol.md §3.2 and §4.4).

// EncodeValue applies the host's GetHttpScriptInvocationContextValue rule (docs/host-protocol.md §3.2) to one Data or Metadata
// value: strings, numbers and booleans become their JSON text as a string ("hello" → "\"hello\"", 1 → "1");
// []byte becomes a base64 string; time.Time is cut to whole seconds; maps, slices of objects and
// json.RawMessage objects are passed through as nested JSON.
func EncodeValue(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		return quoteJSON(x)
	case []byte:
		return base64.StdEncoding.EncodeToString(x)
	case time.Time:
		return formatDateSeconds(x)
	case bool:
		if x {
			return "true"
		}
		return "false"
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return fmt.Sprint(x)
	case float32, float64:
		b, _ := json.Marshal(x)
		return string(b)
	case json.Number:
		return x.String()
	default:
		return v
	}
}

// formatDateSeconds renders a DateTimeOffset the way the host does after its ToString round trip: ISO 8601
// cut to whole seconds, with the offset (docs/host-protocol.md §3.2).
func formatDateSeconds(t time.Time) string {
	return t.Truncate(time.Second).Format("2006-01-02T15:04:05-07:00")
}

// formatDateTimeFull renders a DateTime at full (100 ns) precision the way Newtonsoft writes one inside an
// object (TimerInfo, sys.UtcNow): trailing zeros of the fraction dropped, "Z" for UTC.
func formatDateTimeFull(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00"
	}
	return t.UTC().Truncate(100 * time.Nanosecond).Format("2006-01-02T15:04:05.9999999Z07:00")
}

// quoteJSON writes s as a JSON string literal the way Newtonsoft's default escaping does: only '"', '\\',
// control characters and U+0085/U+2028/U+2029 are escaped; '<', '>', '&' and non-ASCII are not (unlike
// encoding/json).
func quoteJSON(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case 0x85, 0x2028, 0x2029:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			if r < 0x20 {
				fmt.Fprintf(&b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// marshalNoEscape is json.Marshal without HTML escaping (Newtonsoft does not escape <, >, &).
func marshalNoEscape(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// decodeBase64DotNet mimics Convert.FromBase64String: white space (space, tab, CR, LF) is ignored, the rest
// must be a whole number of 4-character groups of the standard alphabet with at most two '=' at the end.
// The empty string is valid (zero bytes).
func decodeBase64DotNet(s string) ([]byte, bool) {
	var clean strings.Builder
	clean.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			continue
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/', c == '=':
			clean.WriteByte(c)
		default:
			return nil, false
		}
	}
	t := clean.String()
	if len(t)%4 != 0 {
		return nil, false
	}
	if i := strings.IndexByte(t, '='); i >= 0 && (len(t)-i > 2 || strings.Trim(t[i:], "=") != "") {
		return nil, false
	}
	b, err := base64.StdEncoding.DecodeString(t)
	if err != nil {
		return nil, false
	}
	return b, true
}

// jsonKind tells the JSON type of a raw value by its first non-space byte.
func jsonKind(raw []byte) byte {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return 0
	}
	switch c := raw[0]; c {
	case '{', '[', '"', 't', 'f', 'n':
		return c
	default:
		return '0'
	}
}

// dotNetScalar renders a JSON number or boolean the way JValue.ToString() does: True/False for booleans,
// integers as written, other numbers as a .NET double.
func dotNetScalar(raw []byte) string {
	s := strings.TrimSpace(string(raw))
	switch s {
	case "true":
		return "True"
	case "false":
		return "False"
	case "null":
		return ""
	}
	if isIntegerLiteral(s) {
		return normalizeInteger(s)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return s
	}
	return formatDotNetDouble(f)
}

func isIntegerLiteral(s string) bool {
	return s != "" && !strings.ContainsAny(s, ".eE")
}

func normalizeInteger(s string) string {
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		return s
	}
	return n.String()
}

// formatDotNetDouble renders a float64 like .NET Core 3.0+ double.ToString(): the shortest round-trip
// digits, fixed notation for exponents in [-4, 15), scientific ("1E+15", "1E-05") outside.
func formatDotNetDouble(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "∞"
	case math.IsInf(f, -1):
		return "-∞"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // d.ddde±xx
	mant, expStr, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(expStr)
	if exp >= 15 || exp < -4 {
		sign := "+"
		if exp < 0 {
			sign = "-"
			exp = -exp
		}
		return fmt.Sprintf("%sE%s%02d", mant, sign, exp)
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// newtonsoftDouble is how Newtonsoft writes a double token: the .NET rendering with ".0" added when it has
// neither a decimal point nor an exponent.
func newtonsoftDouble(f float64) string {
	s := formatDotNetDouble(f)
	if !strings.ContainsAny(s, ".E") && !math.IsNaN(f) && !math.IsInf(f, 0) {
		s += ".0"
	}
	return s
}

// isoDateRE matches what Newtonsoft's DateTimeUtils.TryParseDateTimeIso accepts.
var isoDateRE = regexp.MustCompile(`^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?$`)

// reprintDate models Newtonsoft's default DateParseHandling.DateTime [inferred]: a string value that parses
// as an ISO date becomes a DateTime and is written back as "yyyy-MM-ddTHH:mm:ss.FFFFFFFK": the fraction is
// cut to 7 digits with trailing zeros dropped, a "Z" stays "Z", an offset is converted to the host's local
// time (UTC in Azure, so "+00:00"), and no zone stays no zone.
func reprintDate(s string) (string, bool) {
	m := isoDateRE.FindStringSubmatch(s)
	if m == nil {
		return "", false
	}
	frac := m[7]
	if len(frac) > 7 {
		frac = frac[:7]
	}
	layoutFrac := ""
	if frac != "" {
		layoutFrac = "." + strings.Repeat("0", len(frac))
	}
	base := m[1] + "-" + m[2] + "-" + m[3] + "T" + m[4] + ":" + m[5] + ":" + m[6]
	if frac != "" {
		base += "." + frac
	}
	zone := m[8]
	var t time.Time
	var err error
	switch {
	case zone == "":
		t, err = time.Parse("2006-01-02T15:04:05"+layoutFrac, base)
	case zone == "Z":
		t, err = time.Parse("2006-01-02T15:04:05"+layoutFrac+"Z07:00", base+"Z")
	default:
		t, err = time.Parse("2006-01-02T15:04:05"+layoutFrac+"-07:00", base+zone)
	}
	if err != nil {
		return "", false
	}
	out := t.UTC().Format("2006-01-02T15:04:05.9999999")
	switch {
	case zone == "":
	case zone == "Z":
		out += "Z"
	default:
		out += "+00:00"
	}
	return out, true
}

// reprintJSON parses JSON text and writes it back the way JToken.ToString() does after the host parsed it
// with Newtonsoft's defaults: indented by two spaces, `"key": value`, member order kept, Newtonsoft's
// escaping, numbers and ISO dates normalised as Newtonsoft stores them.
func reprintJSON(raw []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var b strings.Builder
	if err := reprintValue(dec, &b, 0); err != nil {
		return "", err
	}
	if _, err := dec.Token(); err != io.EOF {
		return "", fmt.Errorf("invalid JSON: trailing data")
	}
	return b.String(), nil
}

func reprintValue(dec *json.Decoder, b *strings.Builder, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	return reprintToken(dec, tok, b, depth)
}

func reprintToken(dec *json.Decoder, tok json.Token, b *strings.Builder, depth int) error {
	indent := func(d int) { b.WriteString(strings.Repeat("  ", d)) }
	switch t := tok.(type) {
	case json.Delim:
		closing := json.Delim('}')
		if t == '[' {
			closing = ']'
		}
		first := true
		for {
			if !dec.More() {
				end, err := dec.Token()
				if err != nil {
					return err
				}
				if end != closing {
					return fmt.Errorf("invalid JSON")
				}
				if !first {
					b.WriteByte('\n')
					indent(depth)
				} else {
					b.WriteString(string(t))
				}
				b.WriteString(string(closing))
				return nil
			}
			if first {
				b.WriteString(string(t))
				first = false
			} else {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
			indent(depth + 1)
			if t == '{' {
				key, err := dec.Token()
				if err != nil {
					return err
				}
				ks, ok := key.(string)
				if !ok {
					return fmt.Errorf("invalid JSON object key")
				}
				b.WriteString(quoteJSON(ks))
				b.WriteString(": ")
			}
			if err := reprintValue(dec, b, depth+1); err != nil {
				return err
			}
		}
	case string:
		if d, ok := reprintDate(t); ok {
			b.WriteString(quoteJSON(d))
		} else {
			b.WriteString(quoteJSON(t))
		}
	case json.Number:
		s := t.String()
		if isIntegerLiteral(s) {
			b.WriteString(normalizeInteger(s))
		} else {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				b.WriteString(s)
			} else {
				b.WriteString(newtonsoftDouble(f))
			}
		}
	case bool:
		if t {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case nil:
		b.WriteString("null")
	}
	return nil
}

// splitArray returns the raw elements of a JSON array.
func splitArray(raw []byte) ([]json.RawMessage, error) {
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, err
	}
	return elems, nil
}
