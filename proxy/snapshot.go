package proxy

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"dedupcache/cachestore"
	snap "dedupcache/cachestore/snapshot"
	"dedupcache/dedupbody"
)

// Snapshots: the stored entries written to a file and read back at start
// (warm restart). Each header block and body is written once, under an ID
// (header blocks odd, bodies even), before the first entry that uses it;
// an entry refers to them by ID, so the file is smaller than the logical
// bytes by the dedup ratio. What an entry keeps beyond the store's fields
// (its validators, a Vary index's field names, its surrogate keys) goes in
// its Extra bytes (see encodeExtra).

// SnapshotStats says what a snapshot write or load did.
type SnapshotStats struct {
	Entries int // entries written or loaded
	Bodies  int // body and header block records written or loaded
	Expired int // entries not loaded: their time was up
	Full    int // entries not loaded: the cache was full
	Skipped int // entries or bodies not loaded: damaged records, or entries whose records were damaged
	Bytes   int64
}

// WriteSnapshot writes every stored entry to w, the most recently stored
// first: a load that stops at max_memory keeps those. (Hottest first would
// be better, but the store counts no hits per entry; a response stored
// recently was asked for recently.) Entries stored or evicted meanwhile
// may or may not be in it. Each entry is pinned while its bytes are
// written.
func (p *Proxy) WriteSnapshot(w *snap.Writer) (SnapshotStats, error) {
	var all []*cachestore.Entry
	p.store.Each(func(e *cachestore.Entry) bool {
		if e.Flags&flagHitForMiss == 0 {
			all = append(all, e)
		}
		return true
	})
	slices.SortFunc(all, func(a, b *cachestore.Entry) int { return cmp.Compare(b.Stored, a.Stored) })
	var st SnapshotStats
	ids := make(map[*dedupbody.Body]uint64)
	var next uint64 // ids: 2n+1 header blocks, 2n+2 bodies
	ref := func(b *dedupbody.Body, header bool) (uint64, error) {
		if b == nil {
			return 0, nil
		}
		if id, ok := ids[b]; ok {
			return id, nil
		}
		next++
		id := 2 * next
		if header {
			id--
		}
		ids[b] = id
		st.Bodies++
		st.Bytes += b.Len()
		return id, w.Body(id, b.Bytes())
	}
	for _, e := range all {
		if !e.Pin() {
			continue // left meanwhile
		}
		err := p.writeEntry(w, e, ref)
		p.store.Unpin(e)
		if err != nil {
			return st, err
		}
		st.Entries++
	}
	return st, nil
}

// writeEntry writes e (pinned) and the records it refers to not yet written.
func (p *Proxy) writeEntry(w *snap.Writer, e *cachestore.Entry, ref func(*dedupbody.Body, bool) (uint64, error)) error {
	hid, err := ref(e.Header.Body(), true)
	if err != nil {
		return err
	}
	bid, err := ref(e.Body.Body(), false)
	if err != nil {
		return err
	}
	return w.Entry(&snap.Entry{
		Key: e.Key, Header: hid, Body: bid,
		Stored: e.Stored, Date: e.Date, Status: e.Status, Flags: e.Flags &^ flagIndexed,
		Expires:  e.Expires(),
		Lifetime: e.Lifetime, InitialAge: e.InitialAge, StaleRevalidate: e.StaleRevalidate, StaleError: e.StaleError,
		Extra: p.encodeExtra(e),
	})
}

// extraVersion is the first byte of an entry's Extra bytes.
const extraVersion = 1

// encodeExtra renders what an entry keeps beyond the store's fields:
// version, ETag, Last-Modified, Vary index names, then the surrogate keys,
// each length-prefixed.
func (p *Proxy) encodeExtra(e *cachestore.Entry) []byte {
	var etag, lm, vary string
	if v := validatorsOf(e); v != nil {
		etag, lm = v.v[0], v.v[1]
	}
	if vi, ok := e.Extra.(varyIndex); ok {
		vary = string(vi)
	}
	tags := p.index.tagsOf(e)
	b := []byte{extraVersion}
	for _, s := range []string{etag, lm, vary} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, uint64(len(tags)))
	for _, t := range tags {
		b = binary.AppendUvarint(b, uint64(len(t)))
		b = append(b, t...)
	}
	return b
}

// decodedExtra is encodeExtra's content read back.
type decodedExtra struct {
	etag, lm, vary string
	tags           []string
}

var errExtra = errors.New("proxy: damaged entry extra bytes")

// decodeExtra reads encodeExtra's bytes.
func decodeExtra(b []byte) (decodedExtra, error) {
	var d decodedExtra
	if len(b) == 0 || b[0] != extraVersion {
		return d, errExtra
	}
	b = b[1:]
	str := func() (string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", false
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, true
	}
	var ok bool
	for _, p := range []*string{&d.etag, &d.lm, &d.vary} {
		if *p, ok = str(); !ok {
			return d, errExtra
		}
	}
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return d, errExtra
	}
	b = b[k:]
	for range n {
		t, ok := str()
		if !ok {
			return d, errExtra
		}
		d.tags = append(d.tags, t)
	}
	if len(b) != 0 {
		return d, errExtra
	}
	return d, nil
}

// LoadSnapshot stores the entries read from r, skipping those whose time
// is up at now and, once the cache is full, the rest. Ages go on from the
// stored times, so the time the process was down counts (RFC 9111 §4.2.3).
// A damaged record is skipped (an entry referring to a skipped body with
// it); a damaged file ends the load with the error, the entries read until
// then kept.
func (p *Proxy) LoadSnapshot(r *snap.Reader, now time.Time) (st SnapshotStats, err error) {
	start := time.Now()
	defer func() { p.noteLoad(st, time.Since(start)) }()
	refs := make(map[uint64]dedupbody.Ref) // the load's own reference to each record's bytes
	shared := make(map[uint64]*validators) // per body id: the validators its first entry kept
	defer func() {
		for _, ref := range refs {
			ref.Release()
		}
		p.store.Wait()
	}()
	limit := p.store.MaxMemory()
	for {
		id, data, se, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			st.Skipped += len(r.Skipped())
			return st, err
		}
		if se == nil {
			if p.loadedBytes() >= limit {
				continue // full: no entry loaded from here on could use it
			}
			if id%2 == 1 {
				ref := p.headers.PutCopy(data, dedupbody.Sum(data), parseBlock)
				if blockOf(ref.Body().Aux()) == nil {
					ref.Release()
					continue // not a header block of ours: its entries are skipped
				}
				refs[id] = ref
			} else {
				refs[id] = p.bodies.PutCopy(data, dedupbody.Sum(data), nil)
			}
			st.Bodies++
			st.Bytes += int64(len(data))
			continue
		}
		switch ok, err := p.loadEntry(se, refs, shared, now, limit); {
		case err != nil:
			st.Skipped++
		case !ok && se.Expires != 0 && now.Unix() >= se.Expires:
			st.Expired++
		case !ok:
			st.Full++
		default:
			st.Entries++
		}
	}
	st.Skipped += len(r.Skipped())
	return st, nil
}

// loadEntry stores one entry read from a snapshot. It reports whether it
// stored it; false without an error when its time is up or the cache is
// full.
func (p *Proxy) loadEntry(se *snap.Entry, refs map[uint64]dedupbody.Ref, shared map[uint64]*validators, now time.Time, limit int64) (bool, error) {
	if se.Expires != 0 && now.Unix() >= se.Expires {
		return false, nil
	}
	if p.loadedBytes() >= limit {
		return false, nil
	}
	x, err := decodeExtra(se.Extra)
	if err != nil {
		return false, err
	}
	hr, hok := refs[se.Header]
	br, bok := refs[se.Body]
	if (se.Header != 0 && !hok) || (se.Body != 0 && !bok) || se.Key == "" {
		return false, fmt.Errorf("proxy: snapshot entry %q refers to a missing record", se.Key)
	}
	e := &cachestore.Entry{
		Key: se.Key, Stored: se.Stored, Date: se.Date, Status: se.Status, Flags: se.Flags &^ flagIndexed,
		Lifetime: se.Lifetime, InitialAge: se.InitialAge, StaleRevalidate: se.StaleRevalidate, StaleError: se.StaleError,
	}
	if hok {
		e.Header = p.headers.Put(hr.Bytes(), hr.Body().Hash(), parseBlock) // finds it: a reference, no copy
	}
	if bok {
		e.Body = p.bodies.Put(br.Bytes(), br.Body().Hash(), nil)
	}
	switch {
	case x.vary != "":
		e.Extra = varyIndex(x.vary)
	case x.etag != "" || x.lm != "":
		v := &validators{v: [2]string{x.etag, x.lm}}
		if first := shared[se.Body]; first != nil && first.v == v.v {
			e.Extra = bodyValidators{first} // charged to the first entry with them
		} else {
			e.Extra = v
			if se.Body != 0 && first == nil {
				shared[se.Body] = v
			}
		}
	}
	var ttl time.Duration
	if se.Expires != 0 {
		ttl = time.Unix(se.Expires, 0).Sub(now)
	}
	h, ph, _ := entryHashes(e)
	if x.vary == "" {
		primary, _, _ := strings.Cut(e.Key, "\x00")
		host, _, _ := strings.Cut(primary, " ")
		p.index.stored(h, ph, host, e, x.tags)
	}
	return p.store.Set(h, e, ttl), nil
}

// loadedBytes is what the cache holds against max_memory: entries, unique
// bodies and header blocks (the load's own references included).
func (p *Proxy) loadedBytes() int64 {
	return p.store.Stats().EntryBytes + p.bodies.Stats().Bytes + p.headers.Stats().Bytes
}

// SnapshotState is what /api/stats and /metrics show of snapshots.
type SnapshotState struct {
	Writes           int64   `json:"writes"`             // snapshots written
	WriteErrors      int64   `json:"write_errors"`       // writes that failed (the previous file stays)
	LastWriteUnix    float64 `json:"last_write_unix"`    // when the last good write ended (0: none)
	LastWriteSeconds float64 `json:"last_write_seconds"` // how long it took
	LastWriteEntries int64   `json:"last_write_entries"` // entries it holds
	LastWriteBytes   int64   `json:"last_write_bytes"`   // the file's size
	LoadedEntries    int64   `json:"loaded_entries"`     // entries the start loaded
	LoadSkipped      int64   `json:"load_skipped"`       // damaged records or entries the start skipped
	LoadSeconds      float64 `json:"load_seconds"`
}

// snapshotLog keeps a SnapshotState.
type snapshotLog struct {
	mu  sync.Mutex
	st  SnapshotState
	any bool
}

func (l *snapshotLog) state() *SnapshotState {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.any {
		return nil
	}
	st := l.st
	return &st
}

// NoteSnapshotWrite records a snapshot write (main's, which knows whether
// the file made it to disk): its figures, the file's size, how long it
// took and its error.
func (p *Proxy) NoteSnapshotWrite(st SnapshotStats, fileBytes int64, took time.Duration, err error) {
	l := &p.snapshots
	l.mu.Lock()
	defer l.mu.Unlock()
	l.any = true
	if err != nil {
		l.st.WriteErrors++
		return
	}
	l.st.Writes++
	l.st.LastWriteUnix = float64(time.Now().UnixNano()) / 1e9
	l.st.LastWriteSeconds = took.Seconds()
	l.st.LastWriteEntries = int64(st.Entries)
	l.st.LastWriteBytes = fileBytes
}

// noteLoad records a snapshot load.
func (p *Proxy) noteLoad(st SnapshotStats, took time.Duration) {
	l := &p.snapshots
	l.mu.Lock()
	defer l.mu.Unlock()
	l.any = true
	l.st.LoadedEntries += int64(st.Entries)
	l.st.LoadSkipped += int64(st.Skipped)
	l.st.LoadSeconds += took.Seconds()
}
