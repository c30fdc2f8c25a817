package snapshot

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rec is one record as Next returns it: a body (id != 0) or an entry.
type rec struct {
	id   uint64
	data []byte
	e    *Entry
}

func (r rec) String() string {
	if r.e != nil {
		return fmt.Sprintf("entry %+v", *r.e)
	}
	return fmt.Sprintf("body %d (%d bytes)", r.id, len(r.data))
}

var testCreated = time.Unix(1_700_000_000, 123_456_789)

// write writes recs with a Writer and returns the snapshot's bytes.
func write(t testing.TB, created time.Time, recs []rec) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, created)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, w, recs)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func fill(t testing.TB, w *Writer, recs []rec) {
	t.Helper()
	for _, r := range recs {
		var err error
		if r.e != nil {
			err = w.Entry(r.e)
		} else {
			err = w.Body(r.id, r.data)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// readAll reads data to its end; err is nil when the read ended with io.EOF.
func readAll(data []byte) (r *Reader, recs []rec, err error) {
	r, err = NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, nil, err
	}
	for {
		id, d, e, err := r.Next()
		if err == io.EOF {
			return r, recs, nil
		}
		if err != nil {
			return r, recs, err
		}
		if (id != 0) == (e != nil) {
			panic(fmt.Sprintf("Next returned id %d and entry %v", id, e))
		}
		recs = append(recs, rec{id, d, e})
	}
}

// offsets returns the offsets of the records of a well-formed snapshot, and
// for each the offset and size of its length field.
func offsets(t testing.TB, data []byte) (starts, lenOffs, lenSizes []int) {
	t.Helper()
	for off := headerSize; off < len(data); {
		n, k := binary.Uvarint(data[off+1:])
		if k <= 0 {
			t.Fatalf("bad length at %d", off)
		}
		starts = append(starts, off)
		lenOffs = append(lenOffs, off+1)
		lenSizes = append(lenSizes, k)
		off += 1 + k + int(n) + 4
	}
	return
}

// appendRecord frames a record by hand, for payloads the Writer would not
// produce.
func appendRecord(b []byte, t byte, payload []byte) []byte {
	start := len(b)
	b = append(b, t)
	b = binary.AppendUvarint(b, uint64(len(payload)))
	b = append(b, payload...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

func header() []byte {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, testCreated)
	w.bw.Flush()
	return slices.Clip(buf.Bytes()) // appending copies

}

func footer(bodies, entries uint64) []byte {
	return binary.AppendUvarint(binary.AppendUvarint(nil, bodies), entries)
}

// generate returns nb bodies then ne entries with every field set, drawn
// from a seeded generator, plus entries with extreme values.
func generate(seed uint64, nb, ne, maxBody int) []rec {
	rng := rand.New(rand.NewPCG(seed, seed))
	var recs []rec
	ids := []uint64{0}
	for i := range nb {
		id := rng.Uint64() | 1
		if i == 0 {
			id = math.MaxUint64
		}
		data := make([]byte, rng.IntN(maxBody+1))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		recs = append(recs, rec{id: id, data: data})
		ids = append(ids, id)
	}
	for i := range ne {
		e := &Entry{
			Key:             fmt.Sprintf("https://example.com/%d?q=%x", i, rng.Uint64()),
			Header:          ids[rng.IntN(len(ids))],
			Body:            ids[rng.IntN(len(ids))],
			Stored:          rng.Int64() - math.MaxInt64/2,
			Date:            rng.Int64N(1 << 40),
			Status:          int16(rng.Uint32()),
			Flags:           uint16(rng.Uint32()),
			Expires:         rng.Int64N(1 << 40),
			Lifetime:        int32(rng.Uint32()),
			InitialAge:      int32(rng.Uint32()),
			StaleRevalidate: int32(rng.Uint32()),
			StaleError:      int32(rng.Uint32()),
		}
		switch i % 3 {
		case 0: // nil Extra
		case 1:
			e.Extra = []byte{}
		case 2:
			e.Extra = make([]byte, rng.IntN(64)+1)
			for j := range e.Extra {
				e.Extra[j] = byte(rng.Uint32())
			}
		}
		recs = append(recs, rec{e: e})
	}
	recs = append(recs,
		rec{e: &Entry{}},
		rec{e: &Entry{Extra: []byte{}}},
		rec{e: &Entry{
			Key: strings.Repeat("k", 300), Header: ids[len(ids)-1], Body: ids[len(ids)-1],
			Stored: math.MinInt64, Date: math.MaxInt64, Status: math.MinInt16, Flags: math.MaxUint16,
			Expires: math.MinInt64, Lifetime: math.MinInt32, InitialAge: math.MaxInt32,
			StaleRevalidate: math.MinInt32, StaleError: math.MaxInt32, Extra: []byte{0},
		}},
		rec{e: &Entry{Status: math.MaxInt16, Stored: math.MaxInt64, Expires: math.MaxInt64, Date: math.MinInt64}},
	)
	return recs
}

// small is a snapshot of a few records, for byte-by-byte tests.
func small() []rec {
	return []rec{
		{id: 1, data: []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")},
		{id: 2, data: bytes.Repeat([]byte("body "), 20)},
		{e: &Entry{Key: "GET /a", Header: 1, Body: 2, Stored: 1, Date: 2, Status: 200, Flags: 3, Expires: 4, Lifetime: 5, InitialAge: 6, StaleRevalidate: 7, StaleError: 8, Extra: []byte("etag")}},
		{id: 3, data: nil},
		{e: &Entry{Key: "GET /b", Body: 3, Status: 404}},
		{e: &Entry{Key: "GET /c", Header: 1, Extra: []byte{}}},
	}
}

// isSubsequence reports whether got is want with some records left out.
func isSubsequence(got, want []rec) bool {
	j := 0
	for _, g := range got {
		for j < len(want) && !reflect.DeepEqual(g, want[j]) {
			j++
		}
		if j == len(want) {
			return false
		}
		j++
	}
	return true
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		created time.Time
		recs    []rec
	}{
		{"empty", testCreated, nil},
		{"one body", time.Unix(0, 0), []rec{{id: 7, data: []byte("x")}}},
		{"empty body", testCreated, []rec{{id: 7, data: []byte{}}}},
		{"entry without bodies", time.Unix(-1, 5), []rec{{e: &Entry{Key: "k", Status: 200}}}},
		{"small", testCreated, small()},
		{"many", time.Unix(0, math.MaxInt64), generate(1, 300, 3000, 5000)},
		{"big bodies", time.Unix(0, math.MinInt64), generate(2, 3, 10, 300<<10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := write(t, tt.created, tt.recs)
			r, got, err := readAll(data)
			if err != nil {
				t.Fatal(err)
			}
			if !r.Created().Equal(tt.created) || r.Created().UnixNano() != tt.created.UnixNano() {
				t.Errorf("Created() = %v, want %v", r.Created(), tt.created)
			}
			if len(got) != len(tt.recs) {
				t.Fatalf("read %d records, wrote %d", len(got), len(tt.recs))
			}
			for i := range got {
				want := tt.recs[i]
				if want.e == nil && want.data == nil {
					want.data = []byte{} // bodies read back non-nil
				}
				if !reflect.DeepEqual(got[i], want) {
					t.Fatalf("record %d: got %v, want %v", i, got[i], want)
				}
			}
			if s := r.Skipped(); len(s) != 0 {
				t.Errorf("Skipped() = %v", s)
			}
			// Sticky io.EOF.
			if _, _, _, err := r.Next(); err != io.EOF {
				t.Errorf("Next after EOF: %v", err)
			}
		})
	}
}

// TestReadFresh checks that what Next returns does not alias the Reader's
// buffers: keeping it across later Next calls is safe.
func TestReadFresh(t *testing.T) {
	recs := generate(3, 20, 200, 100)
	r, got, err := readAll(write(t, testCreated, recs))
	if err != nil {
		t.Fatal(err)
	}
	_ = r
	for i := range got {
		if !reflect.DeepEqual(got[i], recs[i]) {
			t.Fatalf("record %d changed after later reads: %v, want %v", i, got[i], recs[i])
		}
	}
}

func TestNewReaderHeader(t *testing.T) {
	good := write(t, testCreated, small())
	mod := func(f func(h []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	tests := []struct {
		name      string
		data      []byte
		reason    string
		truncated bool
	}{
		{"empty", nil, "header truncated", true},
		{"short", good[:10], "header truncated", true},
		{"short not magic", []byte("GET / HTTP/1.1"), "not a snapshot", false},
		{"magic", mod(func(h []byte) { h[0] = 'X' }), "not a snapshot", false},
		{"version", mod(func(h []byte) { h[8] = 2 }), "unsupported format version 2", false},
		{"created", mod(func(h []byte) { h[15] ^= 1 }), "header checksum mismatch", false},
		{"checksum", mod(func(h []byte) { h[23] ^= 0x80 }), "header checksum mismatch", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(tt.data))
			var ce *CorruptError
			if r != nil || !errors.As(err, &ce) {
				t.Fatalf("NewReader = %v, %v; want a *CorruptError", r, err)
			}
			if ce.Offset != 0 || !strings.Contains(ce.Reason, tt.reason) || errors.Is(err, ErrTruncated) != tt.truncated {
				t.Errorf("error %q (offset %d, truncated %v); want %q at 0, truncated %v",
					err, ce.Offset, errors.Is(err, ErrTruncated), tt.reason, tt.truncated)
			}
		})
	}
}

// TestTruncated cuts a small snapshot at every byte offset: the read never
// panics, returns a clean prefix of the records, and ends with a
// *CorruptError wrapping ErrTruncated at an offset within the cut file.
func TestTruncated(t *testing.T) {
	recs := small()
	data := write(t, testCreated, recs)
	_, want, err := readAll(data)
	if err != nil {
		t.Fatal(err)
	}
	for cut := range len(data) {
		r, got, err := readAll(data[:cut])
		var ce *CorruptError
		if !errors.As(err, &ce) || !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut at %d: error %v, want a *CorruptError wrapping ErrTruncated", cut, err)
		}
		if ce.Offset < 0 || ce.Offset > int64(cut) {
			t.Errorf("cut at %d: error offset %d", cut, ce.Offset)
		}
		if len(got) > len(want) || len(got) > 0 && !reflect.DeepEqual(got, want[:len(got)]) {
			t.Fatalf("cut at %d: records %v are not a prefix of %v", cut, got, want)
		}
		if r != nil && len(r.Skipped()) != 0 {
			t.Errorf("cut at %d: skipped %v", cut, r.Skipped())
		}
	}
}

// TestFlippedByte damages one byte of a record: a record whose framing is
// intact is skipped and reported, the records after it are read; damage to
// the framing ends the read with a *CorruptError.
func TestFlippedByte(t *testing.T) {
	recs := small() // records: 0 body 1, 1 body 2, 2 entry, 3 body 3, 4 entry, 5 entry, 6 footer
	data := write(t, testCreated, recs)
	_, want, err := readAll(data)
	if err != nil {
		t.Fatal(err)
	}
	starts, lenOffs, lenSizes := offsets(t, data)
	payload := func(i int) int { return lenOffs[i] + lenSizes[i] }
	without := func(i int) []rec { return append(append([]rec{}, want[:i]...), want[i+1:]...) }
	tests := []struct {
		name    string
		at      int  // offset of the byte changed
		xor     byte // change
		skipped int  // record expected skipped, or -1
		got     []rec
		reason  string // if the read must end with a *CorruptError
	}{
		{"body data", payload(1) + 10, 0x01, 1, without(1), ""},
		{"first body data", payload(0) + 5, 0xff, 0, without(0), ""},
		{"body ID", payload(0), 0x02, 0, without(0), ""},
		{"entry key", payload(2) + 2, 0x20, 2, without(2), ""},
		{"entry last byte", starts[3] - 5, 0x01, 2, without(2), ""},
		{"checksum", starts[4] - 1, 0x80, 3, without(3), ""},
		{"type B to E", starts[1], 'B' ^ 'E', 1, without(1), ""},
		{"type unknown", starts[1], 0x01, -1, want[:1], "unknown record type"},
		{"footer payload", payload(6), 0x01, 6, want, "end of file before the footer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bytes.Clone(data)
			b[tt.at] ^= tt.xor
			r, got, err := readAll(b)
			if tt.reason == "" && err != nil {
				t.Fatalf("read ended with %v", err)
			}
			if tt.reason != "" {
				var ce *CorruptError
				if !errors.As(err, &ce) || !strings.Contains(ce.Reason, tt.reason) {
					t.Fatalf("read ended with %v, want a *CorruptError %q", err, tt.reason)
				}
			}
			if !reflect.DeepEqual(got, tt.got) {
				t.Errorf("records %v, want %v", got, tt.got)
			}
			s := r.Skipped()
			if tt.skipped < 0 {
				if len(s) != 0 {
					t.Errorf("skipped %v, want none", s)
				}
				return
			}
			if len(s) != 1 || s[0].Offset != int64(starts[tt.skipped]) || !strings.Contains(s[0].Reason, "checksum mismatch") {
				t.Errorf("skipped %v, want one checksum mismatch at %d", s, starts[tt.skipped])
			}
		})
	}
}

// totalAlloc runs f and returns the bytes it allocated.
func totalAlloc(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestFlippedLengthBit flips each bit of each record's length: the read ends
// with a *CorruptError, returns only genuine records, and allocates about
// what the file holds, whatever the length claims.
func TestFlippedLengthBit(t *testing.T) {
	recs := append(small(), rec{id: 99, data: bytes.Repeat([]byte{0xab}, 200<<10)}, rec{e: &Entry{Key: "after", Body: 99}})
	data := write(t, testCreated, recs)
	_, want, err := readAll(data)
	if err != nil {
		t.Fatal(err)
	}
	starts, lenOffs, lenSizes := offsets(t, data)
	for i := range starts {
		for at := lenOffs[i]; at < lenOffs[i]+lenSizes[i]; at++ {
			for bit := range 8 {
				b := bytes.Clone(data)
				b[at] ^= 1 << bit
				var got []rec
				var r *Reader
				alloc := totalAlloc(func() { r, got, err = readAll(b) })
				var ce *CorruptError
				if !errors.As(err, &ce) {
					t.Fatalf("record %d, byte %d, bit %d: read ended with %v, want a *CorruptError", i, at, bit, err)
				}
				if ce.Offset < int64(starts[i]) || ce.Offset > int64(len(b)) {
					t.Errorf("record %d, byte %d, bit %d: error offset %d", i, at, bit, ce.Offset)
				}
				if !isSubsequence(got, want) {
					t.Fatalf("record %d, byte %d, bit %d: records %v not among %v", i, at, bit, got, want)
				}
				if r != nil && len(got)+len(r.Skipped()) < i {
					t.Errorf("record %d, byte %d, bit %d: lost records before the damage", i, at, bit)
				}
				if limit := uint64(8*len(b) + 1<<20); alloc > limit {
					t.Errorf("record %d, byte %d, bit %d: allocated %d bytes reading %d", i, at, bit, alloc, len(b))
				}
			}
		}
	}
}

// TestLyingLength gives records lengths that the file cannot hold.
func TestLyingLength(t *testing.T) {
	frame := func(t byte, n uint64, rest int) []byte {
		b := append(header(), t)
		b = binary.AppendUvarint(b, n)
		return append(b, make([]byte, rest)...)
	}
	tests := []struct {
		name      string
		data      []byte
		reason    string
		truncated bool
	}{
		{"MaxRecord body on a short file", frame('B', MaxRecord, 1000), "truncated in its payload", true},
		{"MaxRecord entry on a short file", frame('E', MaxRecord, 100<<10), "truncated in its payload", true},
		{"body over MaxRecord", frame('B', MaxRecord+1, 1000), "implausible B record length", false},
		{"huge length", frame('E', math.MaxUint64, 1000), "implausible E record length", false},
		{"long footer", frame('F', 21, 1000), "implausible F record length", false},
		{"overlong uvarint", append(append(header(), 'B'), bytes.Repeat([]byte{0xff}, 12)...), "not a valid uvarint", false},
		{"uvarint overflow", append(append(header(), 'B'), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02), "not a valid uvarint", false},
		{"length cut", append(append(header(), 'B'), 0xff), "truncated in its length", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			alloc := totalAlloc(func() { _, _, err = readAll(tt.data) })
			var ce *CorruptError
			if !errors.As(err, &ce) || !strings.Contains(ce.Reason, tt.reason) || errors.Is(err, ErrTruncated) != tt.truncated {
				t.Fatalf("read ended with %v, want a *CorruptError %q (truncated %v)", err, tt.reason, tt.truncated)
			}
			if ce.Offset != headerSize {
				t.Errorf("offset %d, want %d", ce.Offset, headerSize)
			}
			if limit := uint64(4*len(tt.data) + 1<<20); alloc > limit {
				t.Errorf("allocated %d bytes reading %d", alloc, len(tt.data))
			}
		})
	}
}

// TestInvalidRecords checks records with a valid checksum that are not valid
// all the same, and the footer's checks.
func TestInvalidRecords(t *testing.T) {
	entry := func(e Entry, f func([]byte) []byte) []byte {
		p := appendEntry(nil, &e)
		if f != nil {
			p = f(p)
		}
		return p
	}
	// An entry payload whose Status varint is set to v.
	status := func(v int64) []byte {
		p := binary.AppendUvarint(nil, 0)    // key
		p = binary.AppendUvarint(p, 0)       // Header
		p = binary.AppendUvarint(p, 0)       // Body
		p = binary.AppendVarint(p, 0)        // Stored
		p = binary.AppendVarint(p, 0)        // Date
		p = binary.AppendVarint(p, v)        // Status
		return append(p, make([]byte, 7)...) // the rest zero
	}
	h := header()
	tests := []struct {
		name   string
		data   []byte
		reason string // "" for a valid file
	}{
		{"valid by hand", appendRecord(appendRecord(h, 'B', []byte{5, 'x'}), 'F', footer(1, 0)), ""},
		{"body ID 0", appendRecord(h, 'B', []byte{0, 'x'}), "without a valid ID"},
		{"body no ID", appendRecord(h, 'B', nil), "without a valid ID"},
		{"entry trailing byte", appendRecord(h, 'E', entry(Entry{Key: "k"}, func(p []byte) []byte { return append(p, 0) })), "1 bytes after the last field"},
		{"entry cut", appendRecord(h, 'E', entry(Entry{Key: "k"}, func(p []byte) []byte { return p[:len(p)-1] })), "bad Extra length"},
		{"key overrun", appendRecord(h, 'E', []byte{50, 'k'}), "key of 50 bytes overruns"},
		{"extra overrun", appendRecord(h, 'E', entry(Entry{Key: "k"}, func(p []byte) []byte { p[len(p)-1] = 9; return p })), "Extra of 8 bytes overruns"},
		{"status range", appendRecord(h, 'E', status(40000)), "Status 40000 out of range"},
		{"status ok", appendRecord(appendRecord(h, 'E', status(-32768)), 'F', footer(0, 1)), ""},
		{"footer counts", appendRecord(appendRecord(h, 'B', []byte{5}), 'F', footer(0, 1)), "footer counts 0 bodies and 1 entries"},
		{"footer too many", appendRecord(h, 'F', footer(1, 0)), "footer counts 1 bodies"},
		{"footer trailing", appendRecord(h, 'F', append(footer(0, 0), 0)), "footer: 1 bytes after"},
		{"footer short", appendRecord(h, 'F', []byte{0}), "bad entry count"},
		{"after footer", append(appendRecord(h, 'F', footer(0, 0)), 'B'), "data after the footer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := readAll(tt.data)
			if tt.reason == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ce *CorruptError
			if !errors.As(err, &ce) || !strings.Contains(ce.Reason, tt.reason) || errors.Is(err, ErrTruncated) {
				t.Fatalf("read ended with %v, want a *CorruptError %q", err, tt.reason)
			}
		})
	}
}

// TestFooterCountsSkipped: the footer's counts include skipped records; a
// body skipped with a mangled type byte still balances.
func TestFooterCountsSkipped(t *testing.T) {
	h := header()
	bad := appendRecord(nil, 'B', []byte{1, 'a'})
	bad[len(bad)-1] ^= 1
	data := append(h, bad...)
	data = appendRecord(data, 'E', appendEntry(nil, &Entry{Key: "k"}))
	data = appendRecord(data, 'F', footer(1, 1))
	r, got, err := readAll(data)
	if err != nil || len(got) != 1 || len(r.Skipped()) != 1 || r.Skipped()[0].Offset != headerSize {
		t.Fatalf("got %v, %v, skipped %v", got, err, r.Skipped())
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestWriterRules(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, testCreated)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Body(0, nil); err == nil {
		t.Error("Body(0) accepted")
	}
	if err := w.Entry(&Entry{Key: "k", Body: 5}); err == nil {
		t.Error("entry referring to an unwritten body accepted")
	}
	if err := w.Body(5, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := w.Body(5, []byte("y")); err == nil {
		t.Error("body ID written twice accepted")
	}
	if err := w.Entry(&Entry{Key: "k", Header: 6, Body: 5}); err == nil {
		t.Error("entry referring to an unwritten header accepted")
	}
	if err := w.Entry(&Entry{Key: "k", Header: 5, Body: 5}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := w.Body(6, nil); err == nil {
		t.Error("Body after Close accepted")
	}
	// The refused calls wrote nothing: the file holds one body, one entry.
	_, got, err := readAll(buf.Bytes())
	if err != nil || len(got) != 2 {
		t.Fatalf("read %v, %v", got, err)
	}

	// Write errors are sticky.
	fw := &failWriter{n: 10 << 10}
	w, err = NewWriter(fw, testCreated)
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 60<<10)
	if err := w.Body(1, big); err != nil {
		t.Fatal(err)
	}
	if err := w.Body(2, big); err == nil {
		t.Fatal("write error not returned")
	}
	if err := w.Entry(&Entry{}); err == nil || w.Close() == nil {
		t.Error("write error not sticky")
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cache.snap")
	tempFiles := func() []string {
		m, _ := filepath.Glob(filepath.Join(dir, ".cache.snap.tmp-*"))
		return m
	}

	// A first snapshot where there was none, then one that replaces it.
	for i, recs := range [][]rec{small(), generate(4, 10, 100, 1000)} {
		created := testCreated.Add(time.Duration(i) * time.Hour)
		if err := WriteFile(path, created, func(w *Writer) error { fill(t, w, recs); return nil }); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if want := write(t, created, recs); !bytes.Equal(data, want) {
			t.Fatalf("snapshot %d: file differs from what a Writer writes", i)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %v", fi.Mode())
		}
	}
	old, _ := os.ReadFile(path)

	// Failures leave the old file byte-identical and no temporary file.
	fillErr := errors.New("fill failed")
	failures := []struct {
		name string
		fill func(*Writer) error
		want error
	}{
		{"fill error", func(w *Writer) error { w.Body(1, make([]byte, 1<<20)); return fillErr }, fillErr},
		{"fill error at once", func(*Writer) error { return fillErr }, fillErr},
		{"too big", func(w *Writer) error { return w.Body(1, make([]byte, MaxRecord+1)) }, nil},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			err := WriteFile(path, time.Now(), tt.fill)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("WriteFile = %v, want %v", err, tt.want)
			}
			if data, _ := os.ReadFile(path); !bytes.Equal(data, old) {
				t.Error("old snapshot changed")
			}
			if m := tempFiles(); len(m) != 0 {
				t.Errorf("temporary files left: %v", m)
			}
		})
	}

	t.Run("panic", func(t *testing.T) {
		func() {
			defer func() { recover() }()
			WriteFile(path, time.Now(), func(*Writer) error { panic("boom") })
		}()
		if data, _ := os.ReadFile(path); !bytes.Equal(data, old) {
			t.Error("old snapshot changed")
		}
		if m := tempFiles(); len(m) != 0 {
			t.Errorf("temporary files left: %v", m)
		}
	})

	t.Run("no directory", func(t *testing.T) {
		if err := WriteFile(filepath.Join(dir, "missing", "x.snap"), time.Now(), func(*Writer) error { return nil }); err == nil {
			t.Error("WriteFile into a missing directory succeeded")
		}
	})
}

const killEnv = "SNAPSHOT_TEST_KILLED_WRITER"

// TestWriteFileKilled kills a process with SIGKILL while it writes a
// snapshot over an old one: the old snapshot must still read back whole.
// The test binary re-executes itself as the writer (killEnv names the path).
func TestWriteFileKilled(t *testing.T) {
	if path := os.Getenv(killEnv); path != "" {
		slowWriter(path)
		os.Exit(0)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "cache.snap")
	recs := generate(5, 20, 200, 2000)
	if err := WriteFile(path, testCreated, func(w *Writer) error { fill(t, w, recs); return nil }); err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestWriteFileKilled$", "-test.count=1")
	cmd.Env = append(os.Environ(), killEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	// Wait until the writer has fsynced a few bodies into its temporary file.
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	timeout := time.After(20 * time.Second)
	for n := 0; n < 5; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("writer exited before it was killed")
			}
			if strings.HasPrefix(l, "synced ") {
				n++
			}
		case <-timeout:
			t.Fatal("writer made no progress")
		}
	}
	m, _ := filepath.Glob(filepath.Join(dir, ".cache.snap.tmp-*"))
	if len(m) != 1 {
		t.Fatalf("temporary files %v, want one being written", m)
	}
	if fi, err := os.Stat(m[0]); err != nil || fi.Size() < 5<<16 {
		t.Fatalf("temporary file not being written: %v, %v", fi, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed = true
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("writer ended with %v, not killed", err)
	}
	for range lines { // drain
	}

	// The old snapshot is intact and reads back whole.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, old) {
		t.Fatal("the snapshot file changed")
	}
	_, got, err := readAll(data)
	if err != nil || len(got) != len(recs) {
		t.Fatalf("old snapshot read %d of %d records: %v", len(got), len(recs), err)
	}
	// The partial file is left beside it, and reads as truncated.
	if _, _, err := readAll(mustRead(t, m[0])); !errors.Is(err, ErrTruncated) {
		t.Errorf("partial file read ended with %v, want ErrTruncated", err)
	}
	// A later WriteFile still works.
	if err := WriteFile(path, testCreated, func(w *Writer) error { return w.Body(1, []byte("new")) }); err != nil {
		t.Fatal(err)
	}
	if _, got, err := readAll(mustRead(t, path)); err != nil || len(got) != 1 {
		t.Fatalf("new snapshot: %v, %v", got, err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// slowWriter is the child of TestWriteFileKilled: it writes a snapshot over
// path body by body, fsyncing its temporary file after each and saying so on
// stdout, slowly enough to be killed halfway.
func slowWriter(path string) {
	pattern := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	err := WriteFile(path, time.Now(), func(w *Writer) error {
		body := bytes.Repeat([]byte{'s'}, 1<<16)
		for id := uint64(1); id <= 2000; id++ {
			if err := w.Body(id, body); err != nil {
				return err
			}
			m, _ := filepath.Glob(pattern)
			for _, tmp := range m {
				if f, err := os.Open(tmp); err == nil {
					f.Sync()
					f.Close()
				}
			}
			fmt.Printf("synced %d\n", id)
			time.Sleep(10 * time.Millisecond)
		}
		return nil
	})
	fmt.Fprintln(os.Stderr, "slow writer finished:", err)
}

func FuzzReader(f *testing.F) {
	good := write(f, testCreated, small())
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(header())
	f.Add([]byte{})
	f.Add(append(header(), 'B', 0xff, 0xff, 0xff, 0xff, 0x03))
	f.Add(write(f, testCreated, generate(6, 3, 10, 50)))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r *Reader
		var got []rec
		var err error
		alloc := totalAlloc(func() { r, got, err = readAll(data) })
		if limit := uint64(64*len(data) + 2<<20); alloc > limit {
			t.Fatalf("allocated %d bytes reading %d", alloc, len(data))
		}
		var ce *CorruptError
		if err != nil && !errors.As(err, &ce) {
			t.Fatalf("read ended with %v, not a *CorruptError", err)
		}
		if err == nil && len(r.Skipped()) == 0 {
			// A valid file: writing its records again reads back the same.
			var buf bytes.Buffer
			w, _ := NewWriter(&buf, r.Created())
			fill(t, w, got)
			w.Close()
			r2, got2, err := readAll(buf.Bytes())
			if err != nil || !reflect.DeepEqual(got, got2) || !r2.Created().Equal(r.Created()) {
				t.Fatalf("rewritten file reads back %v, %v; want %v", got2, err, got)
			}
		}
	})
}

// benchData is 100 bodies of 4 KiB and 100 000 entries over them.
func benchData() []rec {
	var recs []rec
	for id := uint64(1); id <= 100; id++ {
		recs = append(recs, rec{id: id, data: bytes.Repeat([]byte{byte(id)}, 4<<10)})
	}
	for i := range 100_000 {
		e := &Entry{
			Key: fmt.Sprintf("https://example.com/items/%d?page=%d", i, i%7), Header: uint64(i%100) + 1, Body: uint64(i%100) + 1,
			Stored: 1_700_000_000_000_000_000 + int64(i), Date: 1_700_000_000, Status: 200, Flags: 1,
			Expires: 1_700_086_400, Lifetime: 3600, InitialAge: 0, StaleRevalidate: 60, StaleError: 600,
		}
		if i%2 == 0 {
			e.Extra = []byte(`"etag-1234567890"`)
		}
		recs = append(recs, rec{e: e})
	}
	return recs
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func BenchmarkWrite(b *testing.B) {
	recs := benchData()
	b.SetBytes(int64(len(write(b, testCreated, recs))))
	b.ReportAllocs()
	for b.Loop() {
		w, err := NewWriter(&countWriter{}, testCreated)
		if err != nil {
			b.Fatal(err)
		}
		fill(b, w, recs)
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRead(b *testing.B) {
	data := write(b, testCreated, benchData())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := NewReader(bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			_, _, _, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != 100_100 {
			b.Fatalf("read %d records", n)
		}
	}
}
