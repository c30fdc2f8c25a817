package policy

import (
	"net/http"
	"testing"
	"time"
)

func TestParseHTTPDate(t *testing.T) {
	nov6 := time.Date(1994, 11, 6, 8, 49, 37, 0, time.UTC)
	tests := []struct {
		name string
		in   string
		want time.Time // zero: rejected
	}{
		{"RFC 9110 §5.6.7 IMF-fixdate", "Sun, 06 Nov 1994 08:49:37 GMT", nov6},
		{"RFC 9110 §5.6.7 obsolete RFC 850 format", "Sunday, 06-Nov-94 08:49:37 GMT", nov6},
		{"RFC 9110 §5.6.7 asctime format, space-padded day", "Sun Nov  6 08:49:37 1994", nov6},
		{"RFC 9110 §5.6.7 asctime format, two-digit day", "Sun Nov 06 08:49:37 1994", nov6},
		{"RFC 9110 §5.6.7 asctime format, day 16", "Wed Nov 16 08:49:37 1994", nov6.AddDate(0, 0, 10)},
		{"RFC 9110 §5.6.7 RFC 850 year 00-69 is 20xx", "Monday, 01-Jan-24 00:00:00 GMT", time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"RFC 9110 §5.6.7 RFC 850 year 70 is 1970", "Thursday, 01-Jan-70 00:00:00 GMT", time.Unix(0, 0).UTC()},
		{"RFC 9110 §5.6.7 leap second 60", "Sat, 31 Dec 2016 23:59:60 GMT", time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"RFC 9110 §5.6.7 29 February of a leap year", "Thu, 29 Feb 2024 12:00:00 GMT", time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC)},
		{"RFC 9110 §5.6.7 end of a day", "Sun, 06 Nov 1994 23:59:59 GMT", time.Date(1994, 11, 6, 23, 59, 59, 0, time.UTC)},

		{"RFC 9111 §5.3 the value 0", "0", time.Time{}},
		{"empty", "", time.Time{}},
		{"two spaces between fields", "Sun,  06 Nov 1994 08:49:37 GMT", time.Time{}},
		{"two spaces before the time", "Sun, 06 Nov 1994  08:49:37 GMT", time.Time{}},
		{"one-digit hour", "Sun, 06 Nov 1994 8:49:37 GMT", time.Time{}},
		{"one-digit hour, padded to length", "Sun, 06 Nov 1994 8:49:37 GMT ", time.Time{}},
		{"one-digit minute", "Sun, 06 Nov 1994 08:9:37 GMT", time.Time{}},
		{"one-digit second", "Sun, 06 Nov 1994 08:49:7 GMT", time.Time{}},
		{"one-digit day in IMF-fixdate", "Sun, 6 Nov 1994 08:49:37 GMT", time.Time{}},
		{"asctime day as one digit without the padding space", "Sun Nov 6 08:49:37 1994", time.Time{}},
		{"robust: a day name that is not the weekday (the date counts)", "Mon, 06 Nov 1994 08:49:37 GMT", nov6},
		{"robust: the same in RFC 850", "Monday, 06-Nov-94 08:49:37 GMT", nov6},
		{"unknown day name", "Sno, 06 Nov 1994 08:49:37 GMT", time.Time{}},
		{"robust: day name in lower case", "sun, 06 Nov 1994 08:49:37 GMT", nov6},
		{"short day name in RFC 850", "Sun, 06-Nov-94 08:49:37 GMT", time.Time{}},
		{"long day name in IMF-fixdate", "Sunday, 06 Nov 1994 08:49:37 GMT", time.Time{}},
		{"robust: month in upper case", "Sun, 06 NOV 1994 08:49:37 GMT", nov6},
		{"robust: asctime, weekday not the date's (cache-tests' ANSI C case)", "Thu Aug  8 02:01:18 2050", time.Date(2050, 8, 8, 2, 1, 18, 0, time.UTC)},
		{"robust: upper-case day name", "SUN, 06 Nov 1994 08:49:37 GMT", nov6},
		{"robust: gmt in any case", "Sun, 06 Nov 1994 08:49:37 gMT", nov6},
		{"UTC instead of GMT", "Sun, 06 Nov 1994 08:49:37 UTC", time.Time{}},
		{"numeric zone", "Sun, 06 Nov 1994 08:49:37 +0000", time.Time{}},
		{"no zone", "Sun, 06 Nov 1994 08:49:37", time.Time{}},
		{"trailing garbage", "Sun, 06 Nov 1994 08:49:37 GMTx", time.Time{}},
		{"trailing space", "Sun, 06 Nov 1994 08:49:37 GMT ", time.Time{}},
		{"leading space", " Sun, 06 Nov 1994 08:49:37 GMT", time.Time{}},
		{"asctime trailing garbage", "Sun Nov  6 08:49:37 1994 GMT", time.Time{}},
		{"RFC 850 trailing garbage", "Sunday, 06-Nov-94 08:49:37 GMT;", time.Time{}},
		{"RFC 850 with four-digit year", "Sunday, 06-Nov-1994 08:49:37 GMT", time.Time{}},
		{"hour 24", "Sun, 06 Nov 1994 24:00:00 GMT", time.Time{}},
		{"minute 60", "Sun, 06 Nov 1994 08:60:00 GMT", time.Time{}},
		{"second 61", "Sun, 06 Nov 1994 08:49:61 GMT", time.Time{}},
		{"day 00", "Sun, 00 Nov 1994 08:49:37 GMT", time.Time{}},
		{"day 31 of a 30-day month", "Thu, 31 Nov 1994 08:49:37 GMT", time.Time{}},
		{"29 February of a common year", "Thu, 29 Feb 2023 12:00:00 GMT", time.Time{}},
		{"unknown month", "Sun, 06 Nob 1994 08:49:37 GMT", time.Time{}},
		{"signs in numbers", "Sun, 06 Nov +994 08:49:37 GMT", time.Time{}},
		{"other separators", "Sun, 06-Nov-1994 08:49:37 GMT", time.Time{}},
		{"ISO 8601", "1994-11-06T08:49:37Z", time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseHTTPDate(tt.in)
			if ok != !tt.want.IsZero() || !got.Equal(tt.want) {
				t.Errorf("ParseHTTPDate(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, !tt.want.IsZero())
			}
			if ok && got.Location() != time.UTC {
				t.Errorf("ParseHTTPDate(%q) in %v; want UTC", tt.in, got.Location())
			}
		})
	}
}

func TestParseHTTPDateRoundTrip(t *testing.T) {
	for _, tm := range []time.Time{t0, time.Unix(0, 0), time.Date(2069, 12, 31, 23, 59, 59, 0, time.UTC), time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)} {
		for _, layout := range []string{http.TimeFormat, time.RFC850, time.ANSIC} {
			s := tm.UTC().Format(layout)
			if layout == time.RFC850 {
				if tm.Year() > 2069 {
					continue // outside the two-digit window
				}
				s = s[:len(s)-3] + "GMT"
			}
			got, ok := ParseHTTPDate(s)
			if !ok || !got.Equal(tm) {
				t.Errorf("ParseHTTPDate(%q) = %v, %v; want %v", s, got, ok, tm)
			}
		}
	}
}

func TestParseHTTPDateNoAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { ParseHTTPDate("Sun, 06 Nov 1994 08:49:37 GMT") }); n != 0 {
		t.Errorf("ParseHTTPDate allocates %v times; want 0", n)
	}
}
