package proxy

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"

	"dedupcache/cachestore"
	"dedupcache/dedupbody"
	"dedupcache/dedupbody/arena"
)

// A stream is one upstream fetch made to fill the cache, and the clients
// reading it. The fetch runs on a goroutine the proxy owns and reads the
// upstream body at the upstream's pace into a buffer; every client of the
// key (the one that started it, the leader, and any that arrive while it
// runs, the waiters) reads that buffer at its own pace. So a client that
// reads slowly, or hangs up, delays nobody else, and the entry is stored
// when the upstream body ends, whoever is still reading.
//
// What the fetch turns into is decided once the upstream's header is in
// (see kind): a response to store, whose buffer waiters may stream from; a
// response that may not be stored, which only the leader gets (waiters then
// make their own request); a stored entry (a 304 freshened it, or stale
// content answers an error); or a failure.
//
// Memory: a storable body is buffered in full, up to max_object_size, and
// the bytes are reserved from the proxy's in-flight budget (see budget). A
// body that is too big, or finds the budget spent, switches the stream to a
// window: the buffer keeps only what the slowest reader has not read yet,
// at most streamWindow bytes, and the fetch waits for its readers.
//
// The buffers of a stored body come from a pool (see streamBufs) and go
// back to it once nobody can read them: when the fetch has ended and every
// reader has detached (users reaches 0). A body is copied into the body
// store when it is stored, so a miss leaves no garbage for its body's
// bytes. A reader that comes after that finds the stream spent (attach
// fails): follow answers it from the stored entry, or it makes its own
// request when nothing was stored.
type stream struct {
	p      *Proxy
	key    string        // primary key: "host uri"
	fill   *fill         // the fetch's fill (the leader's request as the upstream sees it)
	cancel func()        // aborts the fetch
	ready  chan struct{} // closed once kind is set
	done   chan struct{} // closed once the fetch ended and the entry, if any, is stored

	// Set before ready is closed, read-only after.
	kind      streamKind
	status    int         // response status
	header    http.Header // kindStore, kindPass: the leader's response header
	shared    http.Header // kindStore: the header a waiter gets (the stored fields)
	pend      *pending    // kindStore: what commit needs
	entry     *cachestore.Entry
	entryAs   Status        // kindEntry: X-Cache of the leader's answer
	entryCS   string        // kindEntry: Cache-Status of the leader's answer
	fwdStatus int           // kindEntry after a 304: the upstream's status, for the waiters' Cache-Status
	errStatus int           // kindFailed: 502 or 504
	passBody  []byte        // kindPassEntry: the body of a 304-merged response not stored
	cookies   []string      // kindEntry after a 304: its Set-Cookie, for the leader only
	varyKey   string        // kindStore with Vary: the leader's variant
	varyNames []string      // kindStore: the response's Vary names
	took      time.Duration // the upstream exchange's latency
	gen       uint64        // Proxy.purgeGen when the fetch began

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on a change below, when waited on
	waited   bool          // someone took changed to wait on (waitChan)
	buf      []byte        // bytes [base, base+len(buf)) of the body
	base     int64
	ended    bool            // the fetch is over
	complete bool            // the body ended cleanly
	windowed bool            // the buffer only holds what readers have not read
	held     int             // bytes at the end of buf that readers may not see yet (see writeLocked)
	readers  int             // len(reading)
	reading  []*streamReader // the readers attached and not dropped; each has its offset
	reading0 [2]*streamReader
	reserved int64 // bytes reserved from the in-flight budget
	users    int   // the fetch until release, plus the readers attached and not detached
	spent    bool  // users reached 0: the pooled buffers are back in the pool
	pooled   []*[]byte
	pooled0  [2]*[]byte // pooled's first array
}

// streamKind is what a fetch turned into.
type streamKind uint8

const (
	kindStore     streamKind = iota + 1 // storable: the body is buffered, then stored
	kindPass                            // not storable: for the leader only
	kindEntry                           // answered from a stored entry (304, stale-if-error)
	kindPassEntry                       // a 304 merged into a response that may not be stored: leader only
	kindFailed                          // no response (502/504 to the leader)
)

// streamWindow bounds a windowed stream's buffer.
const streamWindow = 256 << 10

// streamStall is how long a windowed fetch waits for its slowest reader
// before dropping it, when other readers wait behind it.
const streamStall = 10 * time.Second

// errStreamAborted ends a fetch whose windowed body nobody reads any more.
var errStreamAborted = errors.New("proxy: no reader left for a response that is not stored")

func newStream(p *Proxy, key string, f *fill, cancel func()) *stream {
	s := &stream{
		p: p, key: key, fill: f, cancel: cancel,
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
		changed: make(chan struct{}),
		users:   1, // the fetch
	}
	s.pooled = s.pooled0[:0]
	s.reading = s.reading0[:0]
	return s
}

// signal wakes everyone waiting on s. s.mu must be held. A new channel is
// made only when the current one was waited on: most changes have nobody
// waiting (the leader reads what is there), and a miss makes one.
func (s *stream) signal() {
	if !s.waited {
		return
	}
	s.waited = false
	close(s.changed)
	s.changed = make(chan struct{})
}

// waitChan returns the channel the next signal closes. s.mu must be held.
func (s *stream) waitChan() <-chan struct{} {
	s.waited = true
	return s.changed
}

// decided publishes the stream's kind (once).
func (s *stream) decided(k streamKind) {
	s.kind = k
	close(s.ready)
}

// write appends body bytes from the upstream (see writeLocked for hold). In a windowed stream it waits
// until the readers have made room; it fails when none is left to read.
func (s *stream) write(b []byte, hold bool) (int, error) {
	n, overflowed, err := func() (int, bool, error) {
		s.mu.Lock()
		defer s.mu.Unlock() // deferred: a panic must not leave readers locked out
		return s.writeLocked(b, hold)
	}()
	if overflowed {
		s.p.streams.forget(s) // outside s.mu: join locks the table, then a stream
	}
	return n, err
}

// writeLocked is write with s.mu held; overflowed reports that the stream
// just became windowed. hold keeps the readers from seeing b until show:
// the last bytes of a stored body, shown once the entry is stored, since a
// reader that has them all answers its client, whose next request must
// find the entry.
func (s *stream) writeLocked(b []byte, hold bool) (n int, overflowed bool, err error) {
	s.compact() // readers may have made room since the last write
	for s.windowed && len(s.buf)+len(b) > streamWindow && len(s.buf) > 0 {
		if s.readers == 0 {
			return 0, false, errStreamAborted
		}
		ch := s.waitChan()
		s.mu.Unlock()
		select {
		case <-ch:
			s.mu.Lock()
		case <-time.After(streamStall):
			s.mu.Lock()
			s.dropSlowest()
		}
		s.compact()
	}
	if s.windowed && s.readers == 0 {
		return 0, false, errStreamAborted
	}
	if !s.windowed && !s.grow(len(b)) {
		s.windowed = true // too big or the budget is spent: stream through, do not store
		overflowed = true
		s.p.fills.tooBig.Add(1)
		s.compact()
	}
	s.buf = append(s.buf, b...)
	if hold {
		s.held = len(b)
	} else {
		s.signal()
	}
	return len(b), overflowed, nil
}

// grow makes room for n more bytes of a stored body, reserving them from
// the in-flight budget. It reports false when the body would pass
// max_object_size or the budget.
func (s *stream) grow(n int) bool {
	need := len(s.buf) + n
	if int64(need) > s.p.cfg.MaxObjectSize {
		return false
	}
	if need <= cap(s.buf) {
		return true
	}
	c := max(2*cap(s.buf), 4<<10, need) // most API bodies are small: grow from 4 KiB
	if s.pend != nil && s.pend.length >= int64(need) {
		c = min(c, int(s.pend.length)) // never more than announced
	}
	c = min(c, int(s.p.cfg.MaxObjectSize))
	nb, pb := getStreamBuf(c)
	extra := int64(cap(nb) - cap(s.buf))
	if !s.p.budget.take(extra) {
		if pb != nil {
			putStreamBufs([]*[]byte{pb}) // unused: nobody saw it
		}
		return false // an unpooled nb is dropped: rare, and cheaper than asking twice
	}
	s.reserved += extra
	if pb != nil {
		s.pooled = append(s.pooled, pb) // back to the pool when the stream is spent
	}
	s.buf = append(nb, s.buf...) // readers holding the old array keep valid bytes
	return true
}

// streamBufs pools the buffers of stored bodies, by size class: 4 KiB
// doubled up to 512 KiB. A larger body gets a buffer of its own.
var streamBufs [8]sync.Pool

// streamBufClass returns the pool class of a buffer of at least n bytes,
// or -1 if it is larger than the largest class.
func streamBufClass(n int) int {
	for c := range streamBufs {
		if n <= 4<<10<<c {
			return c
		}
	}
	return -1
}

// getStreamBuf returns an empty buffer with room for n bytes, and the
// pooled slice it is (nil when it is not pooled), for putStreamBufs.
func getStreamBuf(n int) ([]byte, *[]byte) {
	c := streamBufClass(n)
	if c < 0 {
		return dedupbody.Alloc(n), nil
	}
	if pb, _ := streamBufs[c].Get().(*[]byte); pb != nil {
		return (*pb)[:0], pb
	}
	b := make([]byte, 0, 4<<10<<c)
	return b, &b
}

// putStreamBufs gives pooled buffers back, poisoned first in a build with
// the arenapoison tag, so that a read through a buffer given back too early
// shows in the tests that check every byte served.
func putStreamBufs(bufs []*[]byte) {
	for _, pb := range bufs {
		b := (*pb)[:cap(*pb)]
		if arena.Poisoned() {
			for i := range b {
				b[i] = arena.PoisonByte
			}
		}
		streamBufs[streamBufClass(cap(b))].Put(pb)
	}
}

// isSpent reports whether s's buffers went back to their pool (see
// spendLocked): its fetch has ended.
func (s *stream) isSpent() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spent
}

// spendLocked marks s spent once nobody can read its buffers any more,
// and returns the pooled ones for putStreamBufs (after s.mu is released).
// s.mu must be held.
func (s *stream) spendLocked() []*[]byte {
	if s.users > 0 || s.spent {
		return nil
	}
	s.spent = true
	s.buf = nil
	bufs := s.pooled
	s.pooled = nil
	return bufs
}

// show makes held bytes visible to the readers.
func (s *stream) show() {
	s.mu.Lock()
	s.held = 0
	s.signal()
	s.mu.Unlock()
}

// compact drops the bytes every reader has read (windowed streams only).
// s.mu must be held.
func (s *stream) compact() {
	if !s.windowed {
		return
	}
	low := s.base + int64(len(s.buf))
	for _, r := range s.reading {
		low = min(low, r.off)
	}
	if drop := low - s.base; drop > 0 {
		n := len(s.buf) - int(drop)
		rest := make([]byte, n, max(n, streamWindow))
		copy(rest, s.buf[drop:])
		s.buf, s.base = rest, low
	}
	s.p.budget.give(s.reserved)
	s.reserved = 0
}

// dropSlowest detaches the reader furthest behind, when at least two are
// reading (a single reader only slows its own response). s.mu must be held.
func (s *stream) dropSlowest() {
	if len(s.reading) < 2 {
		return
	}
	var slow *streamReader
	for _, r := range s.reading {
		if slow == nil || r.off < slow.off {
			slow = r
		}
	}
	s.unread(slow)
	slow.dropped = true
	s.readers--
	s.signal()
}

// end records the end of the fetch: complete if the body ended cleanly.
func (s *stream) end(complete bool) {
	s.mu.Lock()
	s.ended, s.complete = true, complete
	s.held = 0
	s.signal()
	s.mu.Unlock()
}

// release gives back the stream's budget once nothing will read its buffer
// through the stream any more.
// release is also the end of the fetch's use of the buffers.
func (s *stream) release() {
	s.mu.Lock()
	s.p.budget.give(s.reserved)
	s.reserved = 0
	s.users--
	bufs := s.spendLocked()
	s.mu.Unlock()
	putStreamBufs(bufs)
}

// streamReader is one client reading a stream's body.
type streamReader struct {
	s        *stream
	off      int64
	dropped  bool
	detached bool // guarded by s.mu
}

// unread takes r out of s.reading, and reports whether it was there.
// s.mu must be held.
func (s *stream) unread(r *streamReader) bool {
	i := slices.Index(s.reading, r)
	if i < 0 {
		return false
	}
	s.reading = slices.Delete(s.reading, i, i+1)
	return true
}

// attach adds a reader at the start of the body. It fails when the start is
// no longer buffered (a windowed stream that moved on, or a spent one).
// The reader must detach, and may use the bytes next returns until then.
func (s *stream) attach() (*streamReader, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.base > 0 || s.windowed || s.spent {
		return nil, false // the start of the body is gone
	}
	r := &streamReader{s: s}
	s.reading = append(s.reading, r)
	s.readers++
	s.users++
	return r, true
}

// detach removes a reader (it finished or its client left). The bytes its
// next calls returned may not be read afterwards. Later calls do nothing.
func (r *streamReader) detach() {
	s := r.s
	s.mu.Lock()
	if r.detached {
		s.mu.Unlock()
		return
	}
	r.detached = true
	if s.unread(r) {
		s.readers--
	}
	s.users--
	s.compact()
	s.signal()
	bufs := s.spendLocked()
	s.mu.Unlock()
	putStreamBufs(bufs)
}

// next returns the body bytes after the reader's offset, waiting for them.
// At the end of the body it returns io.EOF-like done=true, with complete
// reporting whether the body ended cleanly.
func (r *streamReader) next(ctx context.Context) (b []byte, done, complete bool, err error) {
	s := r.s
	s.mu.Lock()
	for {
		if r.dropped {
			s.mu.Unlock()
			return nil, true, false, errStreamAborted
		}
		end := s.base + int64(len(s.buf)-s.held)
		if r.off < end {
			b = s.buf[r.off-s.base : end-s.base]
			r.off = end
			if s.windowed {
				s.signal() // the fetch may be waiting for room
			}
			s.mu.Unlock()
			return b, false, false, nil
		}
		if s.ended {
			s.mu.Unlock()
			return nil, true, s.complete, nil
		}
		ch := s.waitChan()
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, true, false, ctx.Err()
		}
		s.mu.Lock()
	}
}

// budget is the in-flight allowance: bytes buffered by fetches that have
// not been stored yet, and the number of such fetches. Both come out of
// max_memory (see New).
type budget struct {
	mu       sync.Mutex
	bytes    int64
	maxBytes int64
	fills    int
	maxFills int
}

// take reserves n bytes; it reports false if they are not available.
func (b *budget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bytes+n > b.maxBytes {
		return false
	}
	b.bytes += n
	return true
}

// give returns n reserved bytes.
func (b *budget) give(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.bytes -= n
	b.mu.Unlock()
}

// startFill counts a fetch; it reports false when maxFills run already.
func (b *budget) startFill() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fills >= b.maxFills {
		return false
	}
	b.fills++
	return true
}

// endFill uncounts a fetch.
func (b *budget) endFill() {
	b.mu.Lock()
	b.fills--
	b.mu.Unlock()
}

// inUse returns the bytes reserved and fetches running.
func (b *budget) inUse() (int64, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bytes, b.fills
}

// streams is the table of fetches in flight, by primary key.
type streams struct {
	mu sync.Mutex
	m  map[string]*stream
}

// get returns the stream for key, if one is in flight.
func (t *streams) get(key string) *stream {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[key]
}

// join returns the stream in flight for key, or, when there is none,
// registers the one made by mk and reports that the caller leads it.
func (t *streams) join(key string, mk func() *stream) (s *stream, leader bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.m[key]; s != nil {
		return s, false
	}
	if t.m == nil {
		t.m = make(map[string]*stream)
	}
	s = mk()
	if s == nil {
		return nil, false
	}
	t.m[key] = s
	return s, true
}

// forget removes s from the table (new requests for its key no longer join
// it), if it is still there.
func (t *streams) forget(s *stream) {
	t.mu.Lock()
	if t.m[s.key] == s {
		delete(t.m, s.key)
	}
	t.mu.Unlock()
}

// sink is the ResponseWriter a fetch's ReverseProxy writes to: the header
// and the body go to the stream, never to a client.
type sink struct {
	s     *stream
	h     http.Header
	wrote bool
	n     int64
}

// Header returns the header the response is built in, made on first use:
// the fast fetch sets its own (the upstream's, converted) before
// WriteHeader.
func (k *sink) Header() http.Header {
	if k.h == nil {
		k.h = make(http.Header)
	}
	return k.h
}

// WriteHeader publishes the response (1xx are dropped: only a client
// connection could use them).
func (k *sink) WriteHeader(code int) {
	if k.wrote || code < 200 {
		return
	}
	k.wrote = true
	s := k.s
	if s.kind != 0 {
		return // decided in modifyResponse (an entry) or by the error handler
	}
	s.status, s.header = code, k.Header()
	switch {
	case s.pend != nil:
		if s.pend.length == 0 {
			// The header is the whole response: store it before anyone
			// answers with it.
			s.p.commitStream(s)
		}
		s.decided(kindStore)
	default:
		s.mu.Lock()
		s.windowed = true
		s.mu.Unlock()
		s.p.streams.forget(s) // nothing to join: requests go their own way
		s.decided(kindPass)
	}
}

// Write appends body bytes to the stream.
func (k *sink) Write(b []byte) (int, error) {
	if !k.wrote {
		k.WriteHeader(http.StatusOK)
	}
	if k.s.kind != kindStore && k.s.kind != kindPass {
		return len(b), nil // an entry answers: the upstream body is not needed
	}
	s := k.s
	last := s.kind == kindStore && s.pend.length >= 0 && k.n+int64(len(b)) == s.pend.length
	n, err := s.write(b, last)
	k.n += int64(n)
	if last && err == nil {
		s.p.commitStream(s) // before readers see the last bytes (read-your-writes)
		s.show()
	}
	return n, err
}

// Flush is a no-op: readers flush their own clients.
func (k *sink) Flush() {}
