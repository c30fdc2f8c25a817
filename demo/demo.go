// Package demo is a small built-in API for `dedupcache -demo`. It repeats
// bodies across URLs the way real APIs do (one 404 document for every
// unknown id, one default avatar for most users, one empty page past the
// end, one config document whatever the query), so deduplication shows up in
// the cache's stats from the first few requests.
//
// Every body except /time is built once and is byte-for-byte deterministic:
// no clocks or random numbers go into it, so identical content means
// identical bytes. Responses carry a strong ETag (a hash of the body) and a
// fixed Last-Modified, and answer conditional requests with 304.
package demo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Shape of the demo data.
const (
	numUsers      = 50
	customAvatars = 7 // every 7th user has an avatar of their own; the rest share the default
	numPages      = 5
	pageSize      = 10
)

// lastModified is the Last-Modified of every stored demo resource.
var lastModified = time.Date(2024, time.January, 1, 0, 0, 0, 0, time.UTC)

// Cache-Control values per route.
const (
	ccUsers   = "public, max-age=60"
	ccAvatars = "public, max-age=300"
	ccItems   = "public, max-age=30"
	ccConfig  = "public, max-age=120"
	ccIndex   = "public, max-age=60"
)

// resource is one pre-rendered response.
type resource struct {
	status       int
	contentType  string
	cacheControl string
	etag         string
	body         []byte
}

func newResource(status int, contentType, cacheControl string, body []byte) *resource {
	sum := sha256.Sum256(body)
	return &resource{
		status:       status,
		contentType:  contentType,
		cacheControl: cacheControl,
		etag:         `"` + hex.EncodeToString(sum[:8]) + `"`,
		body:         body,
	}
}

func jsonResource(status int, cacheControl string, v any) *resource {
	body, err := json.Marshal(v)
	if err != nil {
		panic("demo: " + err.Error()) // only fixed, marshalable values are passed
	}
	return newResource(status, "application/json", cacheControl, append(body, '\n'))
}

// serve writes res. 200s go through http.ServeContent, which answers
// If-None-Match, If-Modified-Since, Range and HEAD.
func (res *resource) serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", res.contentType)
	h.Set("Cache-Control", res.cacheControl)
	h.Set("ETag", res.etag)
	h.Set("Last-Modified", lastModified.Format(http.TimeFormat))
	if res.status == http.StatusOK {
		http.ServeContent(w, r, "", lastModified, bytes.NewReader(res.body))
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(res.body)))
	w.WriteHeader(res.status)
	w.Write(res.body)
}

// site holds every pre-rendered response of the demo API.
type site struct {
	index     *resource
	users     []*resource // users[i] is user i+1
	avatars   []*resource // avatars[i] is user i+1's; most point at one shared resource
	pages     []*resource // pages[i] is page i+1
	emptyPage *resource
	badPage   *resource
	config    *resource
	notFound  *resource
}

// Handler returns the demo API:
//
//	GET /                    a JSON index of the routes
//	GET /users/{id}          ids 1..50: a user; anything else: one shared 404 body (max-age=60)
//	GET /users/{id}/avatar   a PNG; most users share one default avatar (max-age=300)
//	GET /items?page=N        pages 1..5; past the end: one shared empty page (max-age=30)
//	GET /config?...          one config document whatever the query (max-age=120)
//	GET /time                the current time, Cache-Control: no-store
//	GET /legacy/stock?sku=N  stock of a product, with no caching headers at all
//	                         (like most internal APIs): only an operator rule
//	                         (the demo config has one) makes it cacheable
//
// Unknown paths get the same 404 body as unknown users. The handler is safe
// for concurrent use; each call builds its own, identical, content.
func Handler() http.Handler {
	s := newSite()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.index.serve)
	mux.HandleFunc("GET /users/{id}", s.user)
	mux.HandleFunc("GET /users/{id}/avatar", s.avatar)
	mux.HandleFunc("GET /items", s.items)
	mux.HandleFunc("GET /config", s.config.serve)
	mux.HandleFunc("GET /time", serveTime)
	mux.HandleFunc("GET /legacy/stock", serveStock)
	mux.HandleFunc("GET /", s.notFound.serve)
	return mux
}

func newSite() *site {
	s := &site{
		notFound: jsonResource(http.StatusNotFound, ccUsers, map[string]string{
			"error": "not_found", "message": "no such resource",
		}),
		badPage: jsonResource(http.StatusBadRequest, ccItems, map[string]string{
			"error": "bad_request", "message": "page must be a positive integer",
		}),
		emptyPage: newResource(http.StatusOK, "application/json", ccItems, []byte(`{"items":[],"next":null}`+"\n")),
		config:    jsonResource(http.StatusOK, ccConfig, clientConfig()),
		index:     jsonResource(http.StatusOK, ccIndex, index()),
	}
	defaultAvatar := newResource(http.StatusOK, "image/png", ccAvatars, defaultAvatarPNG())
	for id := 1; id <= numUsers; id++ {
		s.users = append(s.users, jsonResource(http.StatusOK, ccUsers, makeUser(id)))
		a := defaultAvatar
		if id%customAvatars == 0 {
			a = newResource(http.StatusOK, "image/png", ccAvatars, identiconPNG(id))
		}
		s.avatars = append(s.avatars, a)
	}
	for p := 1; p <= numPages; p++ {
		s.pages = append(s.pages, jsonResource(http.StatusOK, ccItems, makePage(p)))
	}
	return s
}

// userID returns the 1-based user id in the request path, or 0 if there is
// no such user.
func userID(r *http.Request) int {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil || id < 1 || id > numUsers || strconv.Itoa(id) != r.PathValue("id") {
		return 0
	}
	return id
}

func (s *site) user(w http.ResponseWriter, r *http.Request) {
	if id := userID(r); id > 0 {
		s.users[id-1].serve(w, r)
		return
	}
	s.notFound.serve(w, r)
}

func (s *site) avatar(w http.ResponseWriter, r *http.Request) {
	if id := userID(r); id > 0 {
		s.avatars[id-1].serve(w, r)
		return
	}
	s.notFound.serve(w, r)
}

func (s *site) items(w http.ResponseWriter, r *http.Request) {
	page := 1
	if v := r.URL.Query().Get("page"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 {
			s.badPage.serve(w, r)
			return
		}
		page = p
	}
	if page > numPages {
		s.emptyPage.serve(w, r)
		return
	}
	s.pages[page-1].serve(w, r)
}

// serveTime is the one uncacheable route: its body changes every second.
// serveStock answers like an internal API that never thought about
// caching: no Cache-Control, Expires, ETag or Last-Modified. The body is
// deterministic per sku; other query parameters are ignored.
func serveStock(w http.ResponseWriter, r *http.Request) {
	sku, err := strconv.Atoi(r.URL.Query().Get("sku"))
	if err != nil || sku < 1 {
		http.Error(w, `{"error":"want sku=N, N >= 1"}`, http.StatusBadRequest)
		return
	}
	body, _ := json.Marshal(map[string]int{"sku": sku, "in_stock": sku * 7 % 100})
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(body, '\n'))
}

func serveTime(w http.ResponseWriter, r *http.Request) {
	body, _ := json.Marshal(map[string]string{"now": time.Now().UTC().Format(time.RFC3339)})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(append(body, '\n'))
}

var (
	firstNames = []string{"Ada", "Alan", "Barbara", "Dennis", "Edsger", "Frances", "Grace", "John", "Ken", "Margaret"}
	lastNames  = []string{"Lovelace", "Turing", "Liskov", "Ritchie", "Dijkstra"}
	teams      = []string{"platform", "payments", "search", "mobile", "data"}
)

type user struct {
	ID        int    `json:"id"`
	Name      string `json:"name"`
	Email     string `json:"email"`
	Team      string `json:"team"`
	AvatarURL string `json:"avatar_url"`
	Joined    string `json:"joined"`
}

func makeUser(id int) user {
	first, last := firstNames[(id-1)%len(firstNames)], lastNames[(id-1)/len(firstNames)%len(lastNames)]
	return user{
		ID:        id,
		Name:      first + " " + last,
		Email:     fmt.Sprintf("%s.%s.%d@example.com", lower(first), lower(last), id),
		Team:      teams[id%len(teams)],
		AvatarURL: fmt.Sprintf("/users/%d/avatar", id),
		Joined:    lastModified.AddDate(0, 0, -7*id).Format(time.DateOnly),
	}
}

func lower(s string) string { return string(bytes.ToLower([]byte(s))) }

type item struct {
	ID         int    `json:"id"`
	Name       string `json:"name"`
	PriceCents int    `json:"price_cents"`
}

type page struct {
	Items []item  `json:"items"`
	Next  *string `json:"next"`
}

func makePage(p int) page {
	var pg page
	for i := range pageSize {
		id := (p-1)*pageSize + i + 1
		pg.Items = append(pg.Items, item{ID: id, Name: fmt.Sprintf("Item %d", id), PriceCents: 199 + 137*id%5000})
	}
	if p < numPages {
		next := fmt.Sprintf("/items?page=%d", p+1)
		pg.Next = &next
	}
	return pg
}

func clientConfig() any {
	return map[string]any{
		"api_version":        "2024-01-01",
		"min_client_version": "3.2.0",
		"poll_interval_s":    30,
		"features": map[string]bool{
			"dark_mode": true, "new_checkout": false, "offline_sync": true,
		},
	}
}

func index() any {
	type route struct {
		Path string `json:"path"`
		Note string `json:"note"`
	}
	return map[string]any{
		"name": "dedupcache demo API",
		"routes": []route{
			{"/users/{id}", "ids 1-50 exist; every other id returns the same 404 body"},
			{"/users/{id}/avatar", "most users share one default avatar"},
			{"/items?page=N", "pages 1-5; every later page is the same empty page"},
			{"/config?client=...&v=...", "one document whatever the query"},
			{"/time", "no-store: always a BYPASS"},
			{"/legacy/stock?sku=N", "no caching headers: cached only through the demo's rule (ttl 30s, keyed on sku alone)"},
		},
	}
}
