package fakehost

import (
	"testing"
	"time"
)

func TestParseNCRONTAB(t *testing.T) {
	base := time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC) // a Saturday
	tests := []struct {
		expr    string
		from    time.Time
		want    []string // successive occurrences
		wantErr bool
	}{
		{expr: "0 0 * * * *", from: base, want: []string{"2024-06-01T11:00:00Z", "2024-06-01T12:00:00Z"}},
		{expr: "0 */5 * * * *", from: base.Add(90 * time.Second), want: []string{"2024-06-01T10:05:00Z", "2024-06-01T10:10:00Z"}},
		{expr: "*/15 * * * * *", from: base, want: []string{"2024-06-01T10:00:15Z", "2024-06-01T10:00:30Z", "2024-06-01T10:00:45Z", "2024-06-01T10:01:00Z"}},
		{expr: "5,10 30 9-10 * * *", from: base, want: []string{"2024-06-01T10:30:05Z", "2024-06-01T10:30:10Z", "2024-06-02T09:30:05Z"}},
		{expr: "0 0 9 * * MON-FRI", from: base, want: []string{"2024-06-03T09:00:00Z", "2024-06-04T09:00:00Z"}},
		{expr: "0 0 9 * * 1-5", from: base, want: []string{"2024-06-03T09:00:00Z"}},
		{expr: "0 0 0 1 JAN *", from: base, want: []string{"2025-01-01T00:00:00Z"}},
		{expr: "0 0 0 29 2 *", from: base, want: []string{"2028-02-29T00:00:00Z"}},
		{expr: "0 0 12 13 * FRI", from: base, want: []string{"2024-09-13T12:00:00Z", "2024-12-13T12:00:00Z"}}, // day AND day-of-week
		{expr: "0 10-20/5 * * * *", from: base, want: []string{"2024-06-01T10:10:00Z", "2024-06-01T10:15:00Z", "2024-06-01T10:20:00Z", "2024-06-01T11:10:00Z"}},
		{expr: "30/10 0 10 * * *", from: base, want: []string{"2024-06-01T10:00:30Z", "2024-06-01T10:00:40Z", "2024-06-01T10:00:50Z", "2024-06-02T10:00:30Z"}},
		{expr: "0 0 0 * * sun", from: base, want: []string{"2024-06-02T00:00:00Z", "2024-06-09T00:00:00Z"}},
		{expr: "  0   0 * * * *  ", from: base, want: []string{"2024-06-01T11:00:00Z"}},
		{expr: "0 0 0 31 2 *", from: base, want: []string{"0001-01-01T00:00:00Z"}}, // never
		{expr: "0 * * * *", wantErr: true},      // five fields: Unix cron is refused
		{expr: "0 0 * * * * *", wantErr: true},  // seven
		{expr: "60 * * * * *", wantErr: true},   // out of range
		{expr: "0 0 24 * * *", wantErr: true},   // hour
		{expr: "0 0 0 0 * *", wantErr: true},    // day 0
		{expr: "0 0 0 * 13 *", wantErr: true},   // month
		{expr: "0 0 0 * * 7", wantErr: true},    // NCrontab day-of-week is 0-6
		{expr: "0 */0 * * * *", wantErr: true},  // step 0
		{expr: "0 5-1 * * * *", wantErr: true},  // backwards
		{expr: "0 a * * * *", wantErr: true},    // not a number
		{expr: "0 1,,2 * * * *", wantErr: true}, // empty list item
		{expr: "%RENEW_SCHEDULE%", wantErr: true},
		{expr: "", wantErr: true},
	}
	for _, tt := range tests {
		s, err := ParseNCRONTAB(tt.expr)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParseNCRONTAB(%q) = nil error, want one", tt.expr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseNCRONTAB(%q): %v", tt.expr, err)
			continue
		}
		at := tt.from
		for i, w := range tt.want {
			at = s.Next(at)
			if got := at.Format(time.RFC3339); got != w {
				t.Errorf("%q occurrence %d after %s = %s, want %s", tt.expr, i+1, tt.from.Format(time.RFC3339), got, w)
				break
			}
		}
	}
}

func TestParseSchedule(t *testing.T) {
	s, err := ParseSchedule("00:05:00")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC)
	if got := s.Next(base); !got.Equal(base.Add(5 * time.Minute)) {
		t.Errorf("TimeSpan schedule Next = %v", got)
	}
	if _, err := ParseSchedule("00:00:00"); err == nil {
		t.Error("zero TimeSpan accepted")
	}
	if _, err := ParseSchedule("0 0 * * * *"); err != nil {
		t.Error(err)
	}
}

func TestParseTimeSpan(t *testing.T) {
	tests := map[string]time.Duration{
		"00:00:02":     2 * time.Second,
		"00:00:00.100": 100 * time.Millisecond,
		"00:05:00":     5 * time.Minute,
		"01:00":        time.Hour,
		"1.02:00:00":   26 * time.Hour,
		"2":            48 * time.Hour,
	}
	for in, want := range tests {
		got, err := parseTimeSpan(in)
		if err != nil || got != want {
			t.Errorf("parseTimeSpan(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "abc", "00:60:00", "1:2:3:4", "25:00:00"} {
		if _, err := parseTimeSpan(bad); err == nil {
			t.Errorf("parseTimeSpan(%q) accepted", bad)
		}
	}
}
