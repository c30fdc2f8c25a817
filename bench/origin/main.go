// Command origin is the upstream every target of bench/run.sh sits in front
// of. It is deterministic: the same flags give the same bytes on every run
// and machine, so a cache's output can be compared with the origin's.
//
//	GET /obj/N   N in [0, -n): body number N mod -k, -size bytes
//	GET /stats   JSON counters (not counted itself)
//
// Two query parameters of /obj/N change its header, not its body (any other
// query parameter is ignored, so /obj/N?u=1 and /obj/N?u=2 are two cache
// keys for one object):
//
//	max-age=S    Cache-Control: public, max-age=S (S whole seconds, >= 0)
//	             instead of 3600: a cache revalidates the object every S
//	             seconds and the origin answers its If-None-Match with 304
//	tag=T        Surrogate-Key: T (a cache's tag purges)
//
// A max-age that is not a whole number of seconds answers 400.
//
// Each of the K bodies is filled from a ChaCha8 stream keyed by (-seed, body
// number), so bodies do not compress and never share content. An object
// answers 200 with Cache-Control: public, max-age=3600 and a strong ETag
// that is the xxhash of its body: objects sharing a body share the ETag, and
// If-None-Match with that ETag answers 304. -delay adds latency to every
// /obj/ answer (a slow origin). The listen address must be a loopback one.
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cespare/xxhash/v2"

	"dedupcache/bench/internal/benchutil"
)

// object is one distinct body with its pre-rendered header values.
type object struct {
	body   []byte
	etag   string
	length string
}

// origin serves /obj/ and /stats.
type origin struct {
	n     int
	objs  []object
	delay time.Duration

	requests    atomic.Int64 // every request to /obj/
	ok          atomic.Int64 // 200
	notModified atomic.Int64 // 304
	notFound    atomic.Int64 // 404 (bad or out-of-range N)
	badRequest  atomic.Int64 // 400 (bad max-age)
	bodyBytes   atomic.Int64
}

// newOrigin builds k bodies of size bytes for n objects (k is clamped to
// [1, n]).
func newOrigin(n, k, size int, seed uint64, delay time.Duration) *origin {
	if k <= 0 || k > n {
		k = n
	}
	o := &origin{n: n, objs: make([]object, k), delay: delay}
	for j := range o.objs {
		var key [32]byte
		binary.LittleEndian.PutUint64(key[0:], seed)
		binary.LittleEndian.PutUint64(key[8:], uint64(j))
		b := make([]byte, size)
		_, _ = rand.NewChaCha8(key).Read(b)
		o.objs[j] = object{
			body:   b,
			etag:   fmt.Sprintf("%q", strconv.FormatUint(xxhash.Sum64(b), 16)),
			length: strconv.Itoa(size),
		}
	}
	return o
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/stats" {
		o.serveStats(w)
		return
	}
	o.requests.Add(1)
	num, found := strings.CutPrefix(r.URL.Path, "/obj/")
	i, err := strconv.Atoi(num)
	if !found || err != nil || i < 0 || i >= o.n {
		o.notFound.Add(1)
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header()["Allow"] = []string{"GET, HEAD"}
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	cc, tag := defaultCacheControl, ""
	if r.URL.RawQuery != "" {
		q := r.URL.Query()
		if v, ok := q["max-age"]; ok {
			s, err := strconv.ParseUint(v[0], 10, 31)
			if err != nil {
				o.badRequest.Add(1)
				http.Error(w, "max-age: want whole seconds", http.StatusBadRequest)
				return
			}
			cc = []string{"public, max-age=" + strconv.FormatUint(s, 10)}
		}
		tag = q.Get("tag")
	}
	if o.delay > 0 {
		time.Sleep(o.delay)
	}
	obj := &o.objs[i%len(o.objs)]
	h := w.Header()
	h["Cache-Control"] = cc
	h["Etag"] = []string{obj.etag}
	if tag != "" {
		h["Surrogate-Key"] = []string{tag}
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && matchETag(inm, obj.etag) {
		o.notModified.Add(1)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h["Content-Type"] = []string{"application/octet-stream"}
	h["Content-Length"] = []string{obj.length}
	o.ok.Add(1)
	if r.Method == http.MethodHead {
		return
	}
	n, _ := w.Write(obj.body)
	o.bodyBytes.Add(int64(n))
}

// defaultCacheControl is the Cache-Control of an object without max-age=.
var defaultCacheControl = []string{"public, max-age=3600"}

// matchETag reports whether an If-None-Match list names etag (weak
// comparison, as RFC 9110 13.1.2 asks for If-None-Match) or is "*".
func matchETag(list, etag string) bool {
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

// stats is the /stats document; run.sh reads obj_requests.
type stats struct {
	ObjRequests int64 `json:"obj_requests"`
	OK          int64 `json:"ok_200"`
	NotModified int64 `json:"not_modified_304"`
	NotFound    int64 `json:"not_found_404"`
	BadRequest  int64 `json:"bad_request_400"`
	BodyBytes   int64 `json:"body_bytes"`
	Objects     int   `json:"n"`
	Bodies      int   `json:"k"`
}

func (o *origin) snapshot() stats {
	return stats{
		ObjRequests: o.requests.Load(), OK: o.ok.Load(), NotModified: o.notModified.Load(),
		NotFound: o.notFound.Load(), BadRequest: o.badRequest.Load(), BodyBytes: o.bodyBytes.Load(), Objects: o.n, Bodies: len(o.objs),
	}
}

func (o *origin) serveStats(w http.ResponseWriter) {
	w.Header()["Content-Type"] = []string{"application/json"}
	w.Header()["Cache-Control"] = []string{"no-store"}
	_ = json.NewEncoder(w).Encode(o.snapshot())
}

func main() {
	listen := flag.String("listen", "127.0.0.1:28080", "listen address (loopback only)")
	n := flag.Int("n", 1000, "objects /obj/0 .. /obj/N-1")
	k := flag.Int("k", 0, "distinct bodies, object N gets body N mod K (0: K = N)")
	sizeFlag := flag.String("size", "1k", "body size: bytes or a k/m suffix")
	seed := flag.Uint64("seed", 1, "seed of the body contents")
	delay := flag.Duration("delay", 0, "latency added to every /obj/ answer, e.g. 5ms")
	flag.Parse()
	size, err := benchutil.ParseSize(*sizeFlag)
	if err != nil {
		log.Fatal(err)
	}
	if *n <= 0 {
		log.Fatal("-n must be positive")
	}
	if err := benchutil.Loopback(*listen); err != nil {
		log.Fatal(err)
	}
	o := newOrigin(*n, *k, size, *seed, *delay)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: o, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		doc, _ := json.Marshal(o.snapshot())
		log.Printf("origin: stopping, %s", doc)
		_ = srv.Close()
	}()
	log.Printf("origin: %s n=%d k=%d size=%d delay=%s", ln.Addr(), *n, len(o.objs), size, *delay)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
