package fakehost

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule is a timer trigger's schedule.
type Schedule interface {
	// Next returns the first occurrence strictly after t, or the zero time when there is none within five years.
	Next(t time.Time) time.Time
}

// CronSchedule is a parsed six-field NCRONTAB expression: second minute hour day month day-of-week.
//
// Supported: '*', numbers, ranges "a-b", lists "a,b", steps "*/n", "a-b/n" and "a/n" (from a to the field's
// maximum), month names JAN–DEC and day names SUN–SAT (case-insensitive). Day-of-week is 0–6 with 0 = Sunday.
// As in NCrontab (and unlike Vixie cron), a day must match both the day and the day-of-week fields.
// Times are evaluated in the location of the time passed to Next (the double uses UTC, as Azure does unless
// WEBSITE_TIME_ZONE is set).
type CronSchedule struct {
	expr                                  string
	second, minute, hour, day, month, dow uint64
}

type cronField struct {
	name     string
	min, max int
	names    []string // names[i] is value min+i
}

var cronFields = [6]cronField{
	{name: "second", min: 0, max: 59},
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}},
	{name: "day-of-week", min: 0, max: 6, names: []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}},
}

// ParseNCRONTAB parses a six-field NCRONTAB expression as the Functions host does (IncludingSeconds = true).
// Five-field (Unix cron) expressions are refused, as the host refuses them.
func ParseNCRONTAB(expr string) (*CronSchedule, error) {
	fields := strings.Fields(expr)
	if len(fields) != 6 {
		return nil, fmt.Errorf("NCRONTAB %q: want 6 fields (second minute hour day month day-of-week), got %d", expr, len(fields))
	}
	s := &CronSchedule{expr: expr}
	dst := [6]*uint64{&s.second, &s.minute, &s.hour, &s.day, &s.month, &s.dow}
	for i, f := range fields {
		bits, err := parseCronField(f, cronFields[i])
		if err != nil {
			return nil, fmt.Errorf("NCRONTAB %q: %w", expr, err)
		}
		*dst[i] = bits
	}
	return s, nil
}

func (s *CronSchedule) String() string { return s.expr }

func parseCronField(f string, spec cronField) (uint64, error) {
	var bits uint64
	for _, item := range strings.Split(f, ",") {
		if item == "" {
			return 0, fmt.Errorf("%s field %q: empty list item", spec.name, f)
		}
		rng, stepStr, hasStep := strings.Cut(item, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepStr)
			if err != nil || n <= 0 {
				return 0, fmt.Errorf("%s field %q: bad step %q", spec.name, f, stepStr)
			}
			step = n
		}
		var lo, hi int
		switch {
		case rng == "*":
			lo, hi = spec.min, spec.max
		case strings.Contains(rng, "-"):
			a, b, _ := strings.Cut(rng, "-")
			var err error
			if lo, err = cronValue(a, spec); err != nil {
				return 0, err
			}
			if hi, err = cronValue(b, spec); err != nil {
				return 0, err
			}
			if lo > hi {
				return 0, fmt.Errorf("%s field %q: range %d-%d is backwards", spec.name, f, lo, hi)
			}
		default:
			v, err := cronValue(rng, spec)
			if err != nil {
				return 0, err
			}
			lo, hi = v, v
			if hasStep {
				hi = spec.max
			}
		}
		for v := lo; v <= hi; v += step {
			bits |= 1 << uint(v)
		}
	}
	return bits, nil
}

func cronValue(s string, spec cronField) (int, error) {
	for i, n := range spec.names {
		if strings.EqualFold(s, n) {
			return spec.min + i, nil
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%s field: %q is not a number", spec.name, s)
	}
	if v < spec.min || v > spec.max {
		return 0, fmt.Errorf("%s field: %d is outside %d-%d", spec.name, v, spec.min, spec.max)
	}
	return v, nil
}

func has(bits uint64, v int) bool { return bits&(1<<uint(v)) != 0 }

// Next returns the first occurrence strictly after t.
func (s *CronSchedule) Next(t time.Time) time.Time {
	loc := t.Location()
	t = t.Truncate(time.Second).Add(time.Second)
	limit := t.Year() + 5
	for t.Year() <= limit {
		y, mo, d := t.Date()
		h, mi, sec := t.Clock()
		switch {
		case !has(s.month, int(mo)):
			t = time.Date(y, mo+1, 1, 0, 0, 0, 0, loc)
		case !has(s.day, d) || !has(s.dow, int(t.Weekday())):
			t = time.Date(y, mo, d+1, 0, 0, 0, 0, loc)
		case !has(s.hour, h):
			t = time.Date(y, mo, d, h+1, 0, 0, 0, loc)
		case !has(s.minute, mi):
			t = time.Date(y, mo, d, h, mi+1, 0, 0, loc)
		case !has(s.second, sec):
			t = time.Date(y, mo, d, h, mi, sec+1, 0, loc)
		default:
			return t
		}
	}
	return time.Time{}
}

// intervalSchedule is the TimeSpan form of a schedule ("00:05:00"): every interval from the time asked.
type intervalSchedule struct{ every time.Duration }

func (s intervalSchedule) Next(t time.Time) time.Time { return t.Add(s.every) }

// ParseSchedule parses a timer trigger schedule: NCRONTAB with six fields, or a TimeSpan ("hh:mm:ss"; the
// docs allow it on dedicated plans only).
func ParseSchedule(s string) (Schedule, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, " ") && strings.Contains(s, ":") {
		d, err := parseTimeSpan(s)
		if err != nil {
			return nil, fmt.Errorf("schedule %q: %w", s, err)
		}
		if d <= 0 {
			return nil, fmt.Errorf("schedule %q: interval must be positive", s)
		}
		return intervalSchedule{every: d}, nil
	}
	return ParseNCRONTAB(s)
}

// parseTimeSpan parses a .NET TimeSpan in the forms used in host.json: "[-][d.]hh:mm[:ss[.fffffff]]" or a
// plain number of days ("1").
func parseTimeSpan(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var days int
	if !strings.Contains(s, ":") {
		d, err := strconv.Atoi(s)
		if err != nil {
			return 0, fmt.Errorf("bad TimeSpan %q", s)
		}
		days = d
		s = "0:0"
	} else if i := strings.Index(s, "."); i >= 0 && i < strings.Index(s, ":") {
		d, err := strconv.Atoi(s[:i])
		if err != nil {
			return 0, fmt.Errorf("bad TimeSpan %q", s)
		}
		days, s = d, s[i+1:]
	}
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, fmt.Errorf("bad TimeSpan %q", s)
	}
	h, err1 := strconv.Atoi(parts[0])
	m, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || h > 23 || m > 59 || h < 0 || m < 0 {
		return 0, fmt.Errorf("bad TimeSpan %q", s)
	}
	var sec float64
	if len(parts) == 3 {
		v, err := strconv.ParseFloat(parts[2], 64)
		if err != nil || v < 0 || v >= 60 {
			return 0, fmt.Errorf("bad TimeSpan %q", s)
		}
		sec = v
	}
	d := time.Duration(days)*24*time.Hour + time.Duration(h)*time.Hour + time.Duration(m)*time.Minute +
		time.Duration(sec*float64(time.Second))
	if neg {
		d = -d
	}
	return d, nil
}
