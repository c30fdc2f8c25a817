package policy

import (
	"net/http"
	"testing"
)

func BenchmarkParseCacheControl(b *testing.B) {
	h := hdr("Cache-Control", "public, max-age=60, s-maxage=300, stale-while-revalidate=30, stale-if-error=600")
	b.ReportAllocs()
	for b.Loop() {
		ParseCacheControl(h, "Cache-Control")
	}
}

func BenchmarkVaryKey(b *testing.B) {
	names := []string{"Accept", "Accept-Encoding", "Accept-Language"}
	h := hdr("Accept", "application/json, text/plain;q=0.5", "Accept-Encoding", "gzip, deflate, br, zstd", "Accept-Language", "en-US,en;q=0.9")
	b.ReportAllocs()
	for b.Loop() {
		VaryKey(names, h)
	}
}

func BenchmarkStorableAndFreshness(b *testing.B) {
	req := http.Header{}
	resp := hdr("Cache-Control", "public, max-age=60", "Content-Type", "application/json", "Vary", "Accept-Encoding")
	opt := DefaultOptions()
	b.ReportAllocs()
	for b.Loop() {
		Storable(http.MethodGet, req, 200, resp, opt)
		ResponseFreshness(200, resp, t0, opt)
	}
}
