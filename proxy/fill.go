package proxy

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"

	"dedupcache/cachestore"
	"dedupcache/dedupbody"
	"dedupcache/policy"
)

// fill is the state of one forwarded request, from serve to the end of
// the upstream body.
type fill struct {
	status  Status // what X-Cache says when the response is storable
	fwd     string // Cache-Status fwd parameter (RFC 9211 §2.2)
	noStore bool   // the request forbids storing (or is HEAD)

	host, uri string
	hash      uint64
	method    string
	reqHeader http.Header
	reqTime   time.Time
}

func keyHashString(k string) uint64 { return xxhash.Sum64String(k) }

// modifyResponse runs for every upstream response before its header is
// sent to the client. It decides whether the response is stored and, if
// so, wraps its body to capture it as it streams through.
func (p *Proxy) modifyResponse(resp *http.Response) error {
	f, _ := resp.Request.Context().Value(fillKey{}).(*fill)
	if f == nil {
		return nil
	}
	now := p.now()
	st, detail := f.status, ""
	stored := false
	switch {
	case f.status == StatusBypass:
	case f.noStore:
		if f.method != http.MethodHead {
			st, detail = StatusBypass, "request-no-store"
		}
	default:
		ok, reason := policy.Storable(f.method, f.reqHeader, resp.StatusCode, resp.Header, p.cfg.Policy)
		vary, star := policy.ParseVary(resp.Header)
		switch {
		case !ok:
			detail = reason.String()
		case star:
			ok, detail = false, "vary-star"
		case resp.ContentLength > p.cfg.MaxObjectSize:
			ok, detail = false, "too-big"
			p.fills.tooBig.Add(1)
		case len(resp.Header["Trailer"]) > 0:
			ok, detail = false, "trailers"
		}
		var fr policy.Freshness
		if ok {
			fr = policy.ResponseFreshness(resp.StatusCode, resp.Header, now, p.cfg.Policy)
			if fr.Lifetime <= 0 && fr.StaleWhileRevalidate <= 0 {
				// Nothing could ever be served from it without
				// revalidation, which needs validators we may not have.
				ok, detail = false, "no-freshness"
			}
		}
		if !ok {
			st = StatusBypass
			break
		}
		stored = true
		resp.Body = &capture{
			p:     p,
			f:     f,
			rc:    resp.Body,
			b:     dedupbody.NewBuilder(int(resp.ContentLength), int(p.cfg.MaxObjectSize)),
			want:  resp.ContentLength,
			resp:  resp,
			fresh: fr,
			vary:  vary,
			rtime: now,
			hdr:   storedHeader(resp.Header, policy.StripFields(resp.Header, p.cfg.Policy)),
		}
	}
	p.counts[st].Add(1)
	resp.Header["X-Cache"] = xCache[st]
	cs := cacheName + "; fwd=" + f.fwd
	if stored {
		cs += "; stored"
	}
	if detail != "" {
		cs += "; detail=" + detail
	}
	resp.Header.Add("Cache-Status", cs)
	resp.Header.Add("Via", via(resp.ProtoMajor, resp.ProtoMinor))
	return nil
}

// capture wraps an upstream body that is to be stored: it passes the bytes
// on to the client unchanged while a Builder keeps and hashes them, and
// commits the entry only when the body ended cleanly with the announced
// length. Anything else (an error, a short body, Close before EOF because
// the client went away) drops what was kept.
type capture struct {
	p     *Proxy
	f     *fill
	rc    io.ReadCloser
	b     *dedupbody.Builder
	n     int64
	want  int64 // Content-Length, -1 if unknown
	resp  *http.Response
	fresh policy.Freshness
	vary  []string
	rtime time.Time
	hdr   http.Header

	once sync.Once
}

func (c *capture) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	if n > 0 {
		c.n += int64(n)
		_, _ = c.b.Write(p[:n])
	}
	switch {
	case err == io.EOF:
		c.finish(endEOF)
	case err != nil:
		c.finish(endError)
	}
	return n, err
}

func (c *capture) Close() error {
	c.finish(endClose)
	return c.rc.Close()
}

// How a captured body ended.
const (
	endEOF   = iota // the upstream body ended cleanly
	endError        // reading it failed: cut off, reset, timed out
	endClose        // closed before the end: the client went away
)

// finish commits or drops the captured body, once.
func (c *capture) finish(end int) {
	c.once.Do(func() {
		switch {
		case end == endError:
			c.p.fills.cutOff.Add(1)
		case end == endClose:
			c.p.fills.aborted.Add(1)
		case c.want >= 0 && c.n != c.want:
			c.p.fills.cutOff.Add(1)
		case c.b.Overflowed():
			c.p.fills.tooBig.Add(1)
		default:
			c.p.commit(c)
		}
	})
}

// commit stores a completely received response.
func (p *Proxy) commit(c *capture) {
	f := c.f
	c.hdr["Content-Length"] = []string{strconv.FormatInt(c.n, 10)}
	block := renderHeader(c.hdr)
	hdrRef := p.headers.Put(block, dedupbody.Sum(block), parseBlock)
	bodyRef := c.b.Put(p.bodies, nil)

	date := c.rtime
	if d, err := http.ParseTime(c.resp.Header.Get("Date")); err == nil {
		date = d
	}
	var flags uint32
	if c.fresh.NoCache {
		flags |= flagNoCache
	}
	if c.fresh.MustRevalidate {
		flags |= flagMustRevalidate
	}
	if c.fresh.Heuristic {
		flags |= flagHeuristic
	}
	primary := keyString(f.host, f.uri)
	e := &cachestore.Entry{
		Key:             primary,
		Header:          hdrRef,
		Body:            bodyRef,
		Stored:          c.rtime.UnixNano(),
		Date:            date.Unix(),
		Status:          int32(c.resp.StatusCode),
		Flags:           flags,
		Lifetime:        seconds(c.fresh.Lifetime),
		InitialAge:      seconds(policy.InitialAge(c.resp.Header, f.reqTime, c.rtime)),
		StaleRevalidate: seconds(c.fresh.StaleWhileRevalidate),
		StaleError:      seconds(c.fresh.StaleIfError),
	}
	ttl := p.keepFor(c.fresh, time.Duration(e.InitialAge)*time.Second)
	if len(c.vary) == 0 {
		p.store.Set(f.hash, e, ttl)
	} else {
		e.Key = variantKey(primary, policy.VaryKey(c.vary, f.reqHeader))
		p.store.Set(keyHashString(e.Key), e, ttl)
		p.store.Set(f.hash, &cachestore.Entry{Key: primary, Vary: strings.Join(c.vary, ",")}, ttl)
	}
	// Make the entry visible to the next request (ristretto applies new
	// keys asynchronously).
	p.store.Wait()
	p.fills.stored.Add(1)
}

// keepFor is how long an entry stays in the store: while it is fresh and
// while stale content may still be served from it.
func (p *Proxy) keepFor(fr policy.Freshness, initialAge time.Duration) time.Duration {
	stale := max(fr.StaleWhileRevalidate, fr.StaleIfError, p.cfg.Grace)
	if fr.MustRevalidate {
		stale = 0
	}
	ttl := fr.Lifetime - initialAge + stale
	return max(ttl, time.Second)
}

// seconds converts d to whole seconds, saturating at int32.
func seconds(d time.Duration) int32 {
	s := d / time.Second
	if s > 1<<31-1 {
		return 1<<31 - 1
	}
	if s < 0 {
		return 0
	}
	return int32(s)
}
