package policy

import (
	"net/http"
	"strings"
	"time"
)

// ParseHTTPDate parses an HTTP-date (RFC 9110 §5.6.7) in exactly one of the
// three formats a recipient must accept, returning it in UTC:
//
//	Sun, 06 Nov 1994 08:49:37 GMT   IMF-fixdate
//	Sunday, 06-Nov-94 08:49:37 GMT  obsolete RFC 850 format
//	Sun Nov  6 08:49:37 1994        ANSI C's asctime() format
//
// Anything else is rejected: other separators or extra spaces, one-digit
// hours, minutes or seconds, day and month names in another spelling,
// another zone than GMT, leading or trailing characters, and fields out of
// range (month, day of month, hour 00-23, minute 00-59, second 00-60; 60
// being a leap second, read as the next minute's first). Unlike
// [net/http.ParseTime], which lets [time.Parse] accept one-digit fields, a
// value it accepts has the grammar's shape. Within that shape it is as
// robust as §5.6.7 encourages recipients to be: day names, month names and
// "GMT" match in any case ("THU", "AUG", "gmt"), and a day name that is not
// the date's weekday is read like net/http, nginx and browsers read it (the
// date counts).
//
// The RFC 850 format has a two-digit year. §5.6.7 reads it relative to the
// current date, which this package never looks at; ParseHTTPDate uses the
// fixed window 1970-2069 instead (70-99 are 19xx, 00-69 are 20xx), which
// only differs from the RFC's rule for the years 1970-1976 and 2070-2076.
func ParseHTTPDate(s string) (time.Time, bool) { return parseDate(s, false) }

// parseStrictDate is [ParseHTTPDate] without its robustness: day names,
// month names and GMT in the grammar's case, and a day name that is the
// date's weekday. For request fields a recipient must ignore unless they
// are valid HTTP-dates (If-Modified-Since, RFC 9110 §13.1.3), where a date
// read robustly could answer a 304 the origin would not.
func parseStrictDate(s string) (time.Time, bool) { return parseDate(s, true) }

func parseDate(s string, strict bool) (time.Time, bool) {
	var d parsedDate
	switch {
	case len(s) == len("Sun, 06 Nov 1994 08:49:37 GMT") && s[3] == ',':
		d = parseIMFFixdate(s)
	case len(s) == len("Sun Nov  6 08:49:37 1994") && s[3] == ' ':
		d = parseASCTime(s)
	default:
		d = parseRFC850(s)
	}
	if !d.ok || strict && !d.exact {
		return time.Time{}, false
	}
	return d.t, true
}

// parsedDate is a parsed HTTP-date: ok if it has the grammar's shape and its
// fields are in range, exact if its names are in the grammar's case and
// its day name is its weekday.
type parsedDate struct {
	t         time.Time
	ok, exact bool
}

// parseIMFFixdate parses "Sun, 06 Nov 1994 08:49:37 GMT"; len(s) is 29.
func parseIMFFixdate(s string) parsedDate {
	wd, ok := shortDay(s[:3])
	if !ok || s[3:5] != ", " || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || !strings.EqualFold(s[25:], " GMT") {
		return parsedDate{}
	}
	day, ok1 := twoDigits(s[5:7])
	month, ok2 := monthName(s[8:11])
	year, ok3 := fourDigits(s[12:16])
	if !ok1 || !ok2 || !ok3 {
		return parsedDate{}
	}
	return makeDate(year, month, day, s[17:25], wd, s[:3] == shortDays[wd] && s[8:11] == months[month-1] && s[25:] == " GMT")
}

// parseASCTime parses "Sun Nov  6 08:49:37 1994"; len(s) is 24. The day of
// month is two digits or a space and one digit.
func parseASCTime(s string) parsedDate {
	wd, ok := shortDay(s[:3])
	if !ok || s[3] != ' ' || s[7] != ' ' || s[10] != ' ' || s[19] != ' ' {
		return parsedDate{}
	}
	month, ok1 := monthName(s[4:7])
	var day int
	var ok2 bool
	if s[8] == ' ' {
		day, ok2 = digit(s[9])
	} else {
		day, ok2 = twoDigits(s[8:10])
	}
	year, ok3 := fourDigits(s[20:24])
	if !ok1 || !ok2 || !ok3 {
		return parsedDate{}
	}
	return makeDate(year, month, day, s[11:19], wd, s[:3] == shortDays[wd] && s[4:7] == months[month-1])
}

// parseRFC850 parses "Sunday, 06-Nov-94 08:49:37 GMT".
func parseRFC850(s string) parsedDate {
	comma := -1
	for i := 0; i < len(s) && i < len("Wednesday,"); i++ {
		if s[i] == ',' {
			comma = i
			break
		}
	}
	if comma < 0 {
		return parsedDate{}
	}
	wd, ok := longDay(s[:comma])
	rest := s[comma:]
	if !ok || len(rest) != len(", 06-Nov-94 08:49:37 GMT") || rest[:2] != ", " ||
		rest[4] != '-' || rest[8] != '-' || rest[11] != ' ' || !strings.EqualFold(rest[20:], " GMT") {
		return parsedDate{}
	}
	day, ok1 := twoDigits(rest[2:4])
	month, ok2 := monthName(rest[5:8])
	yy, ok3 := twoDigits(rest[9:11])
	if !ok1 || !ok2 || !ok3 {
		return parsedDate{}
	}
	year := 2000 + yy
	if yy >= 70 {
		year = 1900 + yy
	}
	return makeDate(year, month, day, rest[12:20], wd, s[:comma] == longDays[wd] && rest[5:8] == months[month-1] && rest[20:] == " GMT")
}

// makeDate checks the ranges of the date and of tod ("08:49:37"); the
// date is exact if names (the caller's check) is and wd is its weekday.
func makeDate(year int, month time.Month, day int, tod string, wd time.Weekday, names bool) parsedDate {
	if tod[2] != ':' || tod[5] != ':' {
		return parsedDate{}
	}
	hour, ok1 := twoDigits(tod[0:2])
	minute, ok2 := twoDigits(tod[3:5])
	sec, ok3 := twoDigits(tod[6:8])
	if !ok1 || !ok2 || !ok3 || hour > 23 || minute > 59 || sec > 60 ||
		day < 1 || day > daysIn(month, year) {
		return parsedDate{}
	}
	midnight := time.Date(year, month, day, 0, 0, 0, 0, time.UTC)
	t := midnight.Add(time.Duration(hour)*time.Hour + time.Duration(minute)*time.Minute + time.Duration(sec)*time.Second)
	return parsedDate{t: t, ok: true, exact: names && midnight.Weekday() == wd}
}

// daysIn returns the number of days of month in year (proleptic Gregorian).
func daysIn(month time.Month, year int) int {
	return time.Date(year, month+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

var shortDays = [...]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}

var longDays = [...]string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}

var months = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// shortDay reads day-name, in any case.
func shortDay(s string) (time.Weekday, bool) {
	for i, d := range shortDays {
		if strings.EqualFold(s, d) {
			return time.Weekday(i), true
		}
	}
	return 0, false
}

// longDay reads day-name-l of the RFC 850 format.
func longDay(s string) (time.Weekday, bool) {
	for i, d := range longDays {
		if strings.EqualFold(s, d) {
			return time.Weekday(i), true
		}
	}
	return 0, false
}

// monthName reads month, in any case.
func monthName(s string) (time.Month, bool) {
	for i, m := range months {
		if strings.EqualFold(s, m) {
			return time.Month(i + 1), true
		}
	}
	return 0, false
}

func digit(c byte) (int, bool) {
	if c < '0' || c > '9' {
		return 0, false
	}
	return int(c - '0'), true
}

// twoDigits reads 2DIGIT; len(s) is 2.
func twoDigits(s string) (int, bool) {
	a, ok1 := digit(s[0])
	b, ok2 := digit(s[1])
	return a*10 + b, ok1 && ok2
}

// fourDigits reads 4DIGIT; len(s) is 4.
func fourDigits(s string) (int, bool) {
	a, ok1 := twoDigits(s[:2])
	b, ok2 := twoDigits(s[2:])
	return a*100 + b, ok1 && ok2
}

// httpDate parses the field name of h as one HTTP-date ([ParseHTTPDate]).
// A missing field, an invalid date or several field lines give false.
func httpDate(h http.Header, name string) (time.Time, bool) {
	v := h.Values(name)
	if len(v) != 1 {
		return time.Time{}, false
	}
	return ParseHTTPDate(v[0])
}
