package cachestore

import (
	"fmt"
	"testing"
	"time"

	"dedupcache/dedupbody"

	"dedupcache/internal/testutil"
)

// TestEntryOverhead measures the heap an entry really costs beyond its key
// (Entry struct, ristretto's map slot, policy slot and TTL bucket slot, key
// rounding to its size class) and checks that DefaultEntryOverhead does not
// under-charge it by more than a small tolerance.
func TestEntryOverhead(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement; skipped under -short")
	}
	const (
		n         = 100_000
		tolerance = 8
	)
	bodies := dedupbody.New(dedupbody.Config{})
	headers := dedupbody.New(dedupbody.Config{})
	s, err := New(Config{
		MaxMemory:       1 << 30,
		ExpectedEntries: n,
		Stores:          []*dedupbody.Store{bodies, headers},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	data := []byte(`{"items":[],"next":null}`)
	block := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
	bodySum, blockSum := dedupbody.Sum(data), dedupbody.Sum(block)
	keep := []dedupbody.Ref{bodies.Put(data, bodySum, nil), headers.Put(block, blockSum, nil)}

	before := testutil.HeapAlloc()
	var keyBytes int64
	for i := range n {
		e := &Entry{
			Key:    fmt.Sprintf("GET example.com/api/v1/items/%08d?lang=en", i),
			Body:   bodies.Put(data, bodySum, nil), // an equal body exists: shared, nothing kept
			Header: headers.Put(block, blockSum, nil),
			Stored: time.Now().UnixNano(),
			Status: 200,
		}
		keyBytes += int64(len(e.Key))
		if !s.Set(hash(e.Key), e, time.Hour) {
			t.Fatalf("Set %d: got false; want true", i)
		}
		if i%4096 == 4095 {
			s.Wait() // keep ristretto's set buffer from filling up
		}
	}
	s.Wait()
	after := testutil.HeapAlloc()
	if got := s.Stats().Entries; got != n {
		t.Fatalf("Entries: got %d; want %d", got, n)
	}
	if got := bodies.Stats(); got.Bodies != 1 || got.Refs != n+1 {
		t.Fatalf("bodies: got %d with %d refs; want 1 with %d", got.Bodies, got.Refs, n+1)
	}
	perEntry := (int64(after) - int64(before) - keyBytes) / n
	t.Logf("per-entry overhead = %d bytes beyond the key (%d entries, heap +%d B, keys %d B); DefaultEntryOverhead = %d",
		perEntry, n, after-before, keyBytes, DefaultEntryOverhead)
	if DefaultEntryOverhead < perEntry-tolerance {
		t.Errorf("DefaultEntryOverhead = %d under-charges the measured %d bytes per entry (tolerance %d)",
			DefaultEntryOverhead, perEntry, tolerance)
	}
	for _, r := range keep {
		r.Release()
	}
}
