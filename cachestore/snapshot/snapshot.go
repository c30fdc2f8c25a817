// Package snapshot reads and writes the cache's snapshot file, the file a
// cache saves on shutdown and loads on start to restart warm.
//
// The package only frames records: it knows nothing of HTTP or of the rest of
// the cache. A snapshot is a header followed by body records (shared blobs,
// such as response bodies or rendered header blocks, each with a non-zero
// 64-bit ID), entry records (one per cache entry, referring to bodies by ID)
// and a footer record that closes the file.
//
// # Format
//
// All fixed-width integers are little endian. "uvarint" and "varint" are the
// encodings of [encoding/binary.PutUvarint] and [encoding/binary.PutVarint]
// (the latter zig-zag encoded). CRC-32C is CRC-32 with the Castagnoli
// polynomial ([hash/crc32.Castagnoli]).
//
// The header is 24 bytes:
//
//	offset  size  field
//	0       8     magic "DCSNAP\x1a\n"
//	8       4     format version, uint32 ([Version])
//	12      8     creation time, int64 unix nanoseconds
//	20      4     CRC-32C of bytes 0..19, uint32
//
// Records follow, one after another, each framed as:
//
//	size    field
//	1       type: 'B' (0x42) body, 'E' (0x45) entry, 'F' (0x46) footer
//	1..10   payload length n, uvarint (at most [MaxRecord]; a footer's at most 20)
//	n       payload
//	4       CRC-32C of the type byte, the length bytes and the payload, uint32
//
// A body payload is:
//
//	uvarint  ID (never 0)
//	rest     the body's bytes (possibly none)
//
// An entry payload is, in this order:
//
//	uvarint  key length k
//	k        key bytes
//	uvarint  Header (body ID, 0: none)
//	uvarint  Body (body ID, 0: none)
//	varint   Stored (unix nanoseconds)
//	varint   Date (unix seconds)
//	varint   Status (int16 range)
//	uvarint  Flags (uint16 range)
//	varint   Expires (unix seconds, 0: never)
//	varint   Lifetime (int32 range)
//	varint   InitialAge (int32 range)
//	varint   StaleRevalidate (int32 range)
//	varint   StaleError (int32 range)
//	uvarint  x: 0 for a nil Extra, else len(Extra)+1
//	x-1      Extra bytes (when x > 0)
//
// and nothing after. A footer payload is two uvarints: the number of body
// records, then the number of entry records in the file. The footer is the
// last record: no byte follows it.
//
// A writer writes each body before the entries that refer to it, so a reader
// can load the file in one pass.
//
// # Damage
//
// A record whose checksum fails but whose framing is plausible (a known type
// byte, a length within bounds, the whole record present) is skipped and
// reported by [Reader.Skipped]; reading goes on with the next record. Anything
// else — an unknown type byte, an implausible length, a file cut short, a
// missing footer, a record with a valid checksum but an invalid payload, a
// footer whose counts do not match what was read — ends the read with a
// [*CorruptError]. Entries may then refer to bodies that were skipped: the
// caller checks the IDs it is given.
package snapshot

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"
)

// Version is the format version written in the header.
const Version = 1

// MaxRecord is the largest record payload accepted, in bytes, by both the
// [Writer] and the [Reader].
const MaxRecord = 1 << 30

// magic opens every snapshot file.
const magic = "DCSNAP\x1a\n"

// headerSize is the size of the fixed header.
const headerSize = 24

// maxFooter is the largest plausible footer payload: two uvarints.
const maxFooter = 2 * binary.MaxVarintLen64

// Record type bytes.
const (
	typeBody   = 'B'
	typeEntry  = 'E'
	typeFooter = 'F'
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrTruncated is wrapped by the [*CorruptError] a [Reader] returns when the
// file ends early: inside the header or a record, or before the footer.
var ErrTruncated = errors.New("snapshot: file truncated")

// errClosed is returned by a [Writer] used after Close.
var errClosed = errors.New("snapshot: writer closed")

// CorruptError describes damage found in a snapshot: where (Offset, the byte
// offset from the start of the file of the header or of the record concerned)
// and what (Reason).
type CorruptError struct {
	// Offset is the byte offset, from the start of the file, of the header
	// or record found damaged (for a missing footer: the end of the file).
	Offset int64
	// Reason says what is wrong, in words.
	Reason string
	// Err is the underlying error, if any: ErrTruncated for a file cut
	// short. errors.Is and errors.As see it through Unwrap.
	Err error
}

// Error returns "snapshot: corrupt at offset N: Reason".
func (e *CorruptError) Error() string {
	return fmt.Sprintf("snapshot: corrupt at offset %d: %s", e.Offset, e.Reason)
}

// Unwrap returns e.Err.
func (e *CorruptError) Unwrap() error { return e.Err }

// Entry is one cache entry as stored in a snapshot. Header and Body are the IDs
// of body records written before it (0: none).
type Entry struct {
	// Key is the entry's full cache key.
	Key string
	// Header and Body are IDs of body records written before the entry
	// (0: none).
	Header, Body uint64
	// Stored is when the response was received (unix nanoseconds); Date is
	// the response's Date (unix seconds).
	Stored, Date int64 // unix nanoseconds; unix seconds
	// Status is the response status code.
	Status int16
	// Flags are the cache's per-entry flag bits, opaque here.
	Flags uint16
	// Expires is the unix second after which the entry is dropped (0: never).
	Expires int64 // unix seconds after which the entry is dropped (0: never)
	// Lifetime, InitialAge, StaleRevalidate and StaleError are the cache's
	// freshness figures (seconds), opaque here.
	Lifetime, InitialAge, StaleRevalidate, StaleError int32
	// Extra is opaque per-entry bytes (may be nil). A nil Extra and an empty
	// one are told apart: each reads back as it was written.
	Extra []byte // opaque per-entry bytes (may be nil)
}

// appendEntry appends the entry payload of e to b.
func appendEntry(b []byte, e *Entry) []byte {
	b = binary.AppendUvarint(b, uint64(len(e.Key)))
	b = append(b, e.Key...)
	b = binary.AppendUvarint(b, e.Header)
	b = binary.AppendUvarint(b, e.Body)
	b = binary.AppendVarint(b, e.Stored)
	b = binary.AppendVarint(b, e.Date)
	b = binary.AppendVarint(b, int64(e.Status))
	b = binary.AppendUvarint(b, uint64(e.Flags))
	b = binary.AppendVarint(b, e.Expires)
	b = binary.AppendVarint(b, int64(e.Lifetime))
	b = binary.AppendVarint(b, int64(e.InitialAge))
	b = binary.AppendVarint(b, int64(e.StaleRevalidate))
	b = binary.AppendVarint(b, int64(e.StaleError))
	if e.Extra == nil {
		b = binary.AppendUvarint(b, 0)
	} else {
		b = binary.AppendUvarint(b, uint64(len(e.Extra))+1)
		b = append(b, e.Extra...)
	}
	return b
}

// Writer writes a snapshot: [NewWriter] writes the header, then any number of
// [Writer.Body] and [Writer.Entry] calls, then [Writer.Close] writes the
// footer. A Writer buffers its output; it is not safe for concurrent use.
//
// A call that breaks the rules (a zero or repeated body ID, an entry naming a
// body not written before it, a record over [MaxRecord]) returns an error and
// writes nothing; the Writer stays usable. A write error from the underlying
// writer is returned by that call and every later one.
type Writer struct {
	bw       *bufio.Writer
	err      error // sticky write error
	closed   bool
	ids      map[uint64]struct{} // body IDs written
	bodies   uint64
	entries  uint64
	scratch  []byte
	idBuf    [binary.MaxVarintLen64]byte
	frameBuf [1 + binary.MaxVarintLen64]byte
	sumBuf   [4]byte
}

// NewWriter writes the header of a snapshot created at created to w and
// returns a Writer for its records. created must lie within the range of
// int64 unix nanoseconds (years 1678 to 2262).
func NewWriter(w io.Writer, created time.Time) (*Writer, error) {
	sw := &Writer{
		bw:  bufio.NewWriterSize(w, 64<<10),
		ids: make(map[uint64]struct{}),
	}
	var h [headerSize]byte
	copy(h[:8], magic)
	binary.LittleEndian.PutUint32(h[8:], Version)
	binary.LittleEndian.PutUint64(h[12:], uint64(created.UnixNano()))
	binary.LittleEndian.PutUint32(h[20:], crc32.Checksum(h[:20], castagnoli))
	if _, err := sw.bw.Write(h[:]); err != nil {
		return nil, err
	}
	return sw, nil
}

// usable returns the error a call must return before doing anything, if any.
func (w *Writer) usable() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errClosed
	}
	return nil
}

// record writes one record of type t whose payload is head then data.
func (w *Writer) record(t byte, head, data []byte) error {
	n := len(head) + len(data)
	if n > MaxRecord {
		return fmt.Errorf("snapshot: %c record payload of %d bytes exceeds MaxRecord (%d)", t, n, MaxRecord)
	}
	f := w.frameBuf[:]
	f[0] = t
	f = f[:1+binary.PutUvarint(f[1:], uint64(n))]
	crc := crc32.Update(0, castagnoli, f)
	crc = crc32.Update(crc, castagnoli, head)
	crc = crc32.Update(crc, castagnoli, data)
	binary.LittleEndian.PutUint32(w.sumBuf[:], crc)
	for _, p := range [...][]byte{f, head, data, w.sumBuf[:]} {
		if _, err := w.bw.Write(p); err != nil {
			w.err = err
			return err
		}
	}
	return nil
}

// Body writes a body record: id must not be 0 and must not have been written
// before; it must come before any entry that refers to it. data is not
// retained.
func (w *Writer) Body(id uint64, data []byte) error {
	if err := w.usable(); err != nil {
		return err
	}
	if id == 0 {
		return errors.New("snapshot: body ID 0")
	}
	if _, dup := w.ids[id]; dup {
		return fmt.Errorf("snapshot: body ID %d written twice", id)
	}
	head := w.idBuf[:binary.PutUvarint(w.idBuf[:], id)]
	if err := w.record(typeBody, head, data); err != nil {
		return err
	}
	w.ids[id] = struct{}{}
	w.bodies++
	return nil
}

// Entry writes an entry record. Its Header and Body must be 0 or IDs already
// written with [Writer.Body]. e is not retained.
func (w *Writer) Entry(e *Entry) error {
	if err := w.usable(); err != nil {
		return err
	}
	for _, id := range [...]uint64{e.Header, e.Body} {
		if _, ok := w.ids[id]; id != 0 && !ok {
			return fmt.Errorf("snapshot: entry %q refers to body %d, not written before it", e.Key, id)
		}
	}
	w.scratch = appendEntry(w.scratch[:0], e)
	if err := w.record(typeEntry, w.scratch, nil); err != nil {
		return err
	}
	if cap(w.scratch) > 1<<20 {
		w.scratch = nil
	}
	w.entries++
	return nil
}

// Close writes the footer record (the counts of bodies and entries written)
// and flushes the Writer's buffer. It does not close the underlying writer.
// Calls after the first return the first one's error.
func (w *Writer) Close() error {
	if w.closed || w.err != nil {
		return w.err
	}
	w.closed = true
	p := binary.AppendUvarint(w.scratch[:0], w.bodies)
	p = binary.AppendUvarint(p, w.entries)
	if err := w.record(typeFooter, p, nil); err != nil {
		return err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = err
		return err
	}
	return nil
}

// WriteFile writes a snapshot to path atomically: to a temporary file in the same directory,
// fsynced, renamed over path, and the directory fsynced; on any error (fill's included) the
// temporary file is removed and path is untouched.
//
// fill writes the records with the Writer it is given; WriteFile closes the
// Writer after it. The new file has mode 0600. The temporary file is named
// "." + base(path) + ".tmp-" and a random suffix; a process killed while
// writing leaves it behind, which a later WriteFile does not remove. An error
// in the final directory fsync is returned although path has been replaced.
func WriteFile(path string, created time.Time, fill func(*Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	renamed := false
	defer func() {
		if !renamed {
			f.Close()
			os.Remove(tmp)
		}
	}()
	w, err := NewWriter(f, created)
	if err != nil {
		return err
	}
	if err := fill(w); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	renamed = true
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("snapshot: %s written but its directory not synced: %w", path, err)
	}
	return nil
}

// Reader reads a snapshot record by record. It buffers its input; it is not
// safe for concurrent use.
type Reader struct {
	br      *bufio.Reader
	off     int64 // bytes consumed from the start of the file
	created int64
	err     error // sticky: io.EOF after the footer, or the error that ended the read
	bodies  uint64
	entries uint64
	skipped []CorruptError
	scratch []byte // entry and footer payloads
	frame   [1 + binary.MaxVarintLen64]byte
	sum     [4]byte
}

// NewReader reads and checks the header of the snapshot in r (magic, version,
// checksum) and returns a Reader for its records. A bad header is reported as
// a [*CorruptError] at offset 0 whose Reason names the problem: not a
// snapshot (magic), an unsupported version, a checksum mismatch, or a short
// file (wrapping [ErrTruncated]).
func NewReader(r io.Reader) (*Reader, error) {
	sr := &Reader{br: bufio.NewReaderSize(r, 32<<10)}
	var h [headerSize]byte
	n, err := io.ReadFull(sr.br, h[:])
	sr.off = int64(n)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		if n >= len(magic) && string(h[:len(magic)]) != magic {
			return nil, &CorruptError{Offset: 0, Reason: fmt.Sprintf("not a snapshot file (magic %q)", h[:len(magic)])}
		}
		return nil, &CorruptError{Offset: 0, Reason: fmt.Sprintf("header truncated: %d of %d bytes", n, headerSize), Err: ErrTruncated}
	case err != nil:
		return nil, fmt.Errorf("snapshot: reading header: %w", err)
	}
	if string(h[:len(magic)]) != magic {
		return nil, &CorruptError{Offset: 0, Reason: fmt.Sprintf("not a snapshot file (magic %q)", h[:len(magic)])}
	}
	if v := binary.LittleEndian.Uint32(h[8:]); v != Version {
		return nil, &CorruptError{Offset: 0, Reason: fmt.Sprintf("unsupported format version %d (this reader reads %d)", v, Version)}
	}
	if got, want := binary.LittleEndian.Uint32(h[20:]), crc32.Checksum(h[:20], castagnoli); got != want {
		return nil, &CorruptError{Offset: 0, Reason: fmt.Sprintf("header checksum mismatch (stored %#08x, computed %#08x)", got, want)}
	}
	sr.created = int64(binary.LittleEndian.Uint64(h[12:]))
	return sr, nil
}

// Created returns the creation time stored in the header.
func (r *Reader) Created() time.Time { return time.Unix(0, r.created) }

// Skipped returns the records skipped so far: those whose checksum failed
// while their framing was plausible, each with the offset of its type byte.
// The caller must not modify the slice.
func (r *Reader) Skipped() []CorruptError { return r.skipped }

// corrupt ends the read with a *CorruptError.
func (r *Reader) corrupt(off int64, cause error, format string, args ...any) error {
	r.err = &CorruptError{Offset: off, Reason: fmt.Sprintf(format, args...), Err: cause}
	return r.err
}

// readErr ends the read with the error err met reading the record at off
// while reading what; an end of file becomes ErrTruncated.
func (r *Reader) readErr(off int64, err error, what string) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return r.corrupt(off, ErrTruncated, "record truncated in its %s", what)
	}
	r.err = fmt.Errorf("snapshot: reading record at offset %d: %w", off, err)
	return r.err
}

// payloadChunk is the largest payload read in one allocation; longer
// payloads are read in growing steps, so that a length that lies on a short
// file allocates about what the file holds, not what the length claims.
const payloadChunk = 64 << 10

// readPayload reads n bytes into buf (reused if large enough, else replaced)
// and returns them. On error it returns the bytes read so far.
func (r *Reader) readPayload(buf []byte, n int) ([]byte, error) {
	if c := min(n, payloadChunk); cap(buf) < c {
		buf = make([]byte, 0, c)
	}
	buf = buf[:0]
	for len(buf) < n {
		if len(buf) == cap(buf) {
			nb := make([]byte, len(buf), min(n, 2*cap(buf)))
			copy(nb, buf)
			buf = nb
		}
		m, err := io.ReadFull(r.br, buf[len(buf):min(n, cap(buf))])
		buf = buf[:len(buf)+m]
		r.off += int64(m)
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// Next returns the next record: exactly one of body (id, data) or entry is set; io.EOF after a valid
// footer. A record whose checksum fails is skipped and reported in Skipped (with its byte offset)
// when its framing (length) is still plausible; a truncated file or an implausible length ends the
// read with an error (*CorruptError with the offset); a missing footer at EOF is an error too
// (ErrTruncated wrapped in *CorruptError). Bodies larger than MaxRecord are refused as corrupt.
//
// A body is returned as a non-zero id and its data (possibly empty), an entry
// as a non-nil e. data, e and e.Extra are fresh: they do not alias the
// Reader's buffers, and the caller may keep them. Once Next has returned an
// error (io.EOF included) it returns that error again.
//
// The footer's counts are checked against the records read: each count must
// be at least what was read of its kind, and their sum must equal the records
// read plus the records skipped.
func (r *Reader) Next() (id uint64, data []byte, e *Entry, err error) {
	for r.err == nil {
		id, data, e, ok := r.record()
		if ok {
			return id, data, e, nil
		}
	}
	return 0, nil, nil, r.err
}

// record reads one record. It returns ok for a body or an entry; otherwise
// the record was skipped (r.err nil) or the read ended (r.err set).
func (r *Reader) record() (id uint64, data []byte, e *Entry, ok bool) {
	start := r.off
	t, err := r.br.ReadByte()
	if err == io.EOF {
		r.corrupt(start, ErrTruncated, "end of file before the footer")
		return
	} else if err != nil {
		r.readErr(start, err, "type")
		return
	}
	r.off++
	limit := uint64(MaxRecord)
	switch t {
	case typeBody, typeEntry:
	case typeFooter:
		limit = maxFooter
	default:
		r.corrupt(start, nil, "unknown record type %#02x", t)
		return
	}

	// The length, kept as read for the checksum.
	frame := &r.frame
	frame[0] = t
	fn := 1
	var n uint64
	for shift := 0; ; shift += 7 {
		if fn == len(frame) {
			r.corrupt(start, nil, "%c record length is not a valid uvarint", t)
			return
		}
		b, err := r.br.ReadByte()
		if err != nil {
			r.readErr(start, err, "length")
			return
		}
		r.off++
		frame[fn] = b
		fn++
		if shift == 63 && b > 1 {
			r.corrupt(start, nil, "%c record length is not a valid uvarint", t)
			return
		}
		n |= uint64(b&0x7f) << shift
		if b < 0x80 {
			break
		}
	}
	if n > limit {
		r.corrupt(start, nil, "implausible %c record length %d (limit %d)", t, n, limit)
		return
	}

	var p []byte
	if t == typeBody {
		p, err = r.readPayload(nil, int(n)) // fresh: the data is handed out
	} else {
		p, err = r.readPayload(r.scratch, int(n))
		if cap(p) <= 1<<20 {
			r.scratch = p
		} else {
			r.scratch = nil
		}
	}
	if err != nil {
		r.readErr(start, err, fmt.Sprintf("payload (%d of %d bytes)", len(p), n))
		return
	}
	sum := r.sum[:]
	if m, err := io.ReadFull(r.br, sum); err != nil {
		r.off += int64(m)
		r.readErr(start, err, "checksum")
		return
	}
	r.off += 4
	crc := crc32.Update(0, castagnoli, frame[:fn])
	crc = crc32.Update(crc, castagnoli, p)
	if got := binary.LittleEndian.Uint32(sum); got != crc {
		r.skipped = append(r.skipped, CorruptError{
			Offset: start,
			Reason: fmt.Sprintf("checksum mismatch in %c record of %d bytes (stored %#08x, computed %#08x): skipped", t, n, got, crc),
		})
		return
	}

	switch t {
	case typeBody:
		bid, k := binary.Uvarint(p)
		if k <= 0 || bid == 0 {
			r.corrupt(start, nil, "body record without a valid ID")
			return
		}
		r.bodies++
		return bid, p[k:], nil, true
	case typeEntry:
		ent, err := decodeEntry(p)
		if err != nil {
			r.corrupt(start, nil, "entry record: %v", err)
			return
		}
		r.entries++
		return 0, nil, ent, true
	default: // footer
		d := decoder{p: p}
		bodies, entries := d.uvarint("body count"), d.uvarint("entry count")
		if err := d.finish(); err != nil {
			r.corrupt(start, nil, "footer: %v", err)
			return
		}
		skipped := uint64(len(r.skipped))
		if bodies < r.bodies || entries < r.entries || bodies+entries != r.bodies+r.entries+skipped {
			r.corrupt(start, nil, "footer counts %d bodies and %d entries; read %d bodies, %d entries and skipped %d records",
				bodies, entries, r.bodies, r.entries, skipped)
			return
		}
		if _, err := r.br.ReadByte(); err == nil {
			r.corrupt(r.off, nil, "data after the footer")
			return
		} else if err != io.EOF {
			r.err = fmt.Errorf("snapshot: reading after the footer at offset %d: %w", r.off, err)
			return
		}
		r.err = io.EOF
		return
	}
}

// decoder reads the fields of a payload, remembering the first error.
type decoder struct {
	p   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, k := binary.Uvarint(d.p)
	if k <= 0 {
		d.fail("bad %s", field)
		return 0
	}
	d.p = d.p[k:]
	return v
}

func (d *decoder) varint(field string) int64 {
	if d.err != nil {
		return 0
	}
	v, k := binary.Varint(d.p)
	if k <= 0 {
		d.fail("bad %s", field)
		return 0
	}
	d.p = d.p[k:]
	return v
}

// int32 reads a varint that must fit in an int32.
func (d *decoder) int32(field string) int32 {
	v := d.varint(field)
	if v < math.MinInt32 || v > math.MaxInt32 {
		d.fail("%s %d out of range", field, v)
	}
	return int32(v)
}

// bytes returns the next n bytes of the payload (aliasing it).
func (d *decoder) bytes(n uint64, field string) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.p)) {
		d.fail("%s of %d bytes overruns the payload (%d bytes left)", field, n, len(d.p))
		return nil
	}
	b := d.p[:n]
	d.p = d.p[n:]
	return b
}

func (d *decoder) finish() error {
	if d.err == nil && len(d.p) > 0 {
		d.fail("%d bytes after the last field", len(d.p))
	}
	return d.err
}

// decodeEntry decodes an entry payload into a fresh Entry that does not
// alias p.
func decodeEntry(p []byte) (*Entry, error) {
	d := decoder{p: p}
	e := new(Entry)
	e.Key = string(d.bytes(d.uvarint("key length"), "key"))
	e.Header = d.uvarint("Header")
	e.Body = d.uvarint("Body")
	e.Stored = d.varint("Stored")
	e.Date = d.varint("Date")
	status := d.varint("Status")
	if status < math.MinInt16 || status > math.MaxInt16 {
		d.fail("Status %d out of range", status)
	}
	e.Status = int16(status)
	flags := d.uvarint("Flags")
	if flags > math.MaxUint16 {
		d.fail("Flags %d out of range", flags)
	}
	e.Flags = uint16(flags)
	e.Expires = d.varint("Expires")
	e.Lifetime = d.int32("Lifetime")
	e.InitialAge = d.int32("InitialAge")
	e.StaleRevalidate = d.int32("StaleRevalidate")
	e.StaleError = d.int32("StaleError")
	if x := d.uvarint("Extra length"); x > 0 {
		if extra := d.bytes(x-1, "Extra"); extra != nil {
			e.Extra = append(make([]byte, 0, len(extra)), extra...)
		}
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return e, nil
}
