package cachestore

import (
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"dedupcache/internal/testutil"
)

// TestChurnHeapIsBounded: a full store that keeps replacing entries with
// long TTLs (a cache's life) holds a heap that follows the entries stored,
// not the entries ever inserted. Ristretto's own TTLs grew it by ~20 B per
// insertion until the TTLs passed (the Store keeps TTLs in the entries and
// sweeps them itself). It also checks that the heap per stored entry at
// that plateau is what DefaultEntryOverhead charges, within a tolerance.
func TestChurnHeapIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement; skipped under -short")
	}
	// In a bubble, so that the insertions spread over (fake) minutes, as
	// misses do: ristretto filed TTLs in 5-second buckets.
	synctest.Test(t, testChurnHeapIsBounded)
}

func testChurnHeapIsBounded(t *testing.T) {
	const (
		round    = 200_000
		keyLen   = 40
		capacity = 20_000 // entries that fit
	)
	s, err := New(Config{
		MaxMemory: capacity * (DefaultEntryOverhead + keyLen),
		Hash:      func(e *Entry) uint64 { return hash(e.Key) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := testutil.HeapAlloc()
	next := 0
	fill := func() {
		for range round {
			k := "GET example.com/api/v1/items/" + strconv.Itoa(100_000_000+next) // keyLen bytes
			next++
			s.Set(hash(k), &Entry{Key: k, Status: 200}, 24*time.Hour)
			if next%4096 == 0 {
				s.Wait()
			}
			if next%10_000 == 0 {
				time.Sleep(5 * time.Second)
			}
		}
		s.Wait()
	}
	// Ristretto's maps settle within a few rounds of replacing every
	// entry ten times over.
	fill()
	fill()
	first := testutil.HeapAlloc()
	const more = 4
	for range more {
		fill()
	}
	last := testutil.HeapAlloc()
	entries := s.Stats().Entries
	growth := float64(int64(last)-int64(first)) / (more * round)
	perEntry := float64(int64(last)-int64(base)) / float64(entries)
	t.Logf("%d insertions, %d entries stored: heap growth %.2f B per insertion after the first %d; heap %.0f B per stored entry (charged %d + key %d)",
		(2+more)*round, entries, growth, 2*round, perEntry, DefaultEntryOverhead, keyLen)
	if growth > 1 {
		t.Errorf("heap grows by %.2f B per insertion into a full store; want it flat (<= 1)", growth)
	}
	if charged := float64(DefaultEntryOverhead + keyLen); perEntry > charged+8 {
		t.Errorf("heap per stored entry %.0f B; DefaultEntryOverhead + key charge %.0f B (tolerance 8)", perEntry, charged)
	}
}
