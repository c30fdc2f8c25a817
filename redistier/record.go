package redistier

import (
	"encoding/binary"
	"errors"
)

// Record is one stored response without its body: what the proxy needs to
// rebuild an entry. It is plain data, held by value; Header and Tags are
// owned by whoever holds the Record (Get returns fresh slices, Put copies
// them into its encoding before it returns).
type Record struct {
	// Status is the response status code.
	Status int
	// Header is the proxy's rendered header block, stored as is.
	Header []byte
	// Stored is when the response was received (unix nanoseconds); Date is
	// its Date (unix seconds).
	Stored, Date int64
	// Flags are the proxy's bits, stored as is.
	Flags uint32
	// Lifetime, InitialAge, StaleRevalidate and StaleError are seconds.
	Lifetime, InitialAge, StaleRevalidate, StaleError int32
	// Tags are the surrogate keys a tag purge selects the entry by.
	Tags []string
	// BodyHash is the SHA-256 of the body and BodyLen its length. Put
	// computes both from the body it is given; Get fills them in.
	BodyHash [32]byte
	BodyLen  int64
}

// entry is what an entry key holds: the record plus what Get checks before
// trusting it.
type entry struct {
	key    string  // the full cache key, compared on read (K is a hash)
	gen    [8]byte // the primary key's generation the entry was written under
	epoch  [8]byte // the namespace epoch (purge-all) seen when the fill began
	since  int64   // Redis time (ms) when the fill began, for prefix purges
	rec    Record
	inline []byte // the body when it is inlined, else nil
}

// The entry encoding, version 1:
//
//	"DCe1" gen[8] epoch[8] since(varint) key(len-prefixed)
//	status(uvarint) flags(uvarint) stored date(varint)
//	lifetime initial_age stale_revalidate stale_error(varint)
//	header(len-prefixed) ntags(uvarint) tags(len-prefixed each)
//	body_hash[32] body_len(uvarint) inline(u8) [body(len-prefixed)]
const entryMagic = "DCe1"

var errCorrupt = errors.New("redistier: corrupt entry record")

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func (e *entry) encode() []byte {
	r := &e.rec
	n := 64 + len(e.key) + len(r.Header) + len(e.inline)
	for _, t := range r.Tags {
		n += len(t) + 2
	}
	b := make([]byte, 0, n)
	b = append(b, entryMagic...)
	b = append(b, e.gen[:]...)
	b = append(b, e.epoch[:]...)
	b = binary.AppendVarint(b, e.since)
	b = appendString(b, e.key)
	b = binary.AppendUvarint(b, uint64(r.Status))
	b = binary.AppendUvarint(b, uint64(r.Flags))
	b = binary.AppendVarint(b, r.Stored)
	b = binary.AppendVarint(b, r.Date)
	for _, v := range [...]int32{r.Lifetime, r.InitialAge, r.StaleRevalidate, r.StaleError} {
		b = binary.AppendVarint(b, int64(v))
	}
	b = appendBytes(b, r.Header)
	b = binary.AppendUvarint(b, uint64(len(r.Tags)))
	for _, t := range r.Tags {
		b = appendString(b, t)
	}
	b = append(b, r.BodyHash[:]...)
	b = binary.AppendUvarint(b, uint64(r.BodyLen))
	if e.inline != nil {
		b = append(b, 1)
		b = appendBytes(b, e.inline)
	} else {
		b = append(b, 0)
	}
	return b
}

// decoder reads an encoding, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() { d.err, d.b = errCorrupt, nil }

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) fixed(dst []byte) {
	if len(d.b) < len(dst) {
		d.fail()
		return
	}
	copy(dst, d.b)
	d.b = d.b[len(dst):]
}

// bytes returns a length-prefixed field, aliasing the input.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) int32() int32 {
	v := d.varint()
	if v != int64(int32(v)) {
		d.fail()
	}
	return int32(v)
}

// decodeEntry parses an entry value. The result aliases b.
func decodeEntry(b []byte) (e entry, err error) {
	if len(b) < len(entryMagic) || string(b[:len(entryMagic)]) != entryMagic {
		return e, errCorrupt
	}
	d := decoder{b: b[len(entryMagic):]}
	d.fixed(e.gen[:])
	d.fixed(e.epoch[:])
	e.since = d.varint()
	e.key = string(d.bytes())
	r := &e.rec
	status := d.uvarint()
	flags := d.uvarint()
	if status > 999 || flags > 1<<32-1 {
		d.fail()
	}
	r.Status, r.Flags = int(status), uint32(flags)
	r.Stored = d.varint()
	r.Date = d.varint()
	r.Lifetime, r.InitialAge, r.StaleRevalidate, r.StaleError = d.int32(), d.int32(), d.int32(), d.int32()
	r.Header = d.bytes()
	nt := d.uvarint()
	if nt > uint64(len(d.b)) {
		d.fail()
	}
	if nt > 0 && d.err == nil {
		r.Tags = make([]string, 0, nt)
		for range nt {
			r.Tags = append(r.Tags, string(d.bytes()))
		}
	}
	d.fixed(r.BodyHash[:])
	bl := d.uvarint()
	if bl > 1<<62 {
		d.fail()
	}
	r.BodyLen = int64(bl)
	var inl [1]byte
	d.fixed(inl[:])
	switch inl[0] {
	case 0:
	case 1:
		e.inline = d.bytes()
		if int64(len(e.inline)) != r.BodyLen {
			d.fail()
		}
	default:
		d.fail()
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	return e, d.err
}
