package cachestore

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"dedupcache/dedupbody"
	"dedupcache/dedupbody/arena"
)

// TestPinDefersRelease checks the reader's rule: an entry pinned before it
// leaves keeps its header block and body until the last Unpin, and an
// entry that has left cannot be pinned.
func TestPinDefersRelease(t *testing.T) {
	f := newFixture(t, Config{MaxMemory: 1 << 20})
	e := f.entry("k", []byte("pinned body"), "h: 1")
	f.s.Set(hash("k"), e, 0)
	f.s.Wait()
	got, ok := f.s.Get(hash("k"))
	if !ok || !got.Pin() || !got.Pin() {
		t.Fatalf("Get/Pin of a stored entry failed")
	}
	f.s.Del(hash("k"))
	f.checkReleased(e, Deleted)
	if st := f.s.Stats(); st.Pinned != 1 || st.Entries != 0 {
		t.Errorf("after Del of a pinned entry: Pinned %d Entries %d; want 1 0", st.Pinned, st.Entries)
	}
	if e.Pin() {
		t.Errorf("Pin of an entry that left the store succeeded")
	}
	if string(e.Body.Bytes()) != "pinned body" || f.bodies.Stats().Bodies != 1 {
		t.Fatalf("a pinned entry's body was released")
	}
	f.s.Unpin(e)
	if f.bodies.Stats().Bodies != 1 {
		t.Fatalf("released at the first of two Unpins")
	}
	f.s.Unpin(e)
	if st := f.bodies.Stats(); st.Bodies != 0 || f.s.Stats().Pinned != 0 {
		t.Errorf("after the last Unpin: bodies %d, Pinned %d; want 0 0", st.Bodies, f.s.Stats().Pinned)
	}
	f.closeAndCheck()
}

// TestPinUnpinWhileStored checks that pins taken and given back while the
// entry stays stored change nothing, and that Close releases it as usual.
func TestPinUnpinWhileStored(t *testing.T) {
	f := newFixture(t, Config{MaxMemory: 1 << 20})
	e := f.entry("k", []byte("body"), "h")
	f.s.Set(hash("k"), e, 0)
	f.s.Wait()
	for range 3 {
		if !e.Pin() {
			t.Fatal("Pin failed")
		}
		f.s.Unpin(e)
	}
	if e.Pins() != 0 || f.bodies.Stats().Bodies != 1 {
		t.Errorf("pins %d bodies %d; want 0 1", e.Pins(), f.bodies.Stats().Bodies)
	}
	f.closeAndCheck()
}

// TestPinRace has readers pin, read and unpin entries while writers
// replace and delete them: every pinned read sees its entry's own bytes,
// and at the end every body is released exactly once (closeAndCheck).
func TestPinRace(t *testing.T) {
	// Bodies in an arena: a read of a released body would see another
	// body's bytes (or poison, with the arenapoison tag).
	a := arena.New(arena.Config{})
	defer a.Close()
	f := newFixtureWith(t, Config{MaxMemory: 1 << 20}, dedupbody.New(dedupbody.Config{Arena: a}))
	const keys, rounds = 16, 2000
	body := func(k, gen int) []byte {
		return bytes.Repeat([]byte(fmt.Sprintf("%02d:%06d|", k, gen)), 20)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for gen := range rounds {
				k := r.IntN(keys)
				key := fmt.Sprint(k)
				if r.IntN(4) == 0 {
					f.s.Del(hash(key))
					continue
				}
				f.s.Set(hash(key), f.entry(key, body(k, gen), "h"), 0)
			}
		}()
	}
	var bad sync.Map
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for k := range keys {
					e, ok := f.s.Get(hash(fmt.Sprint(k)))
					if !ok || !e.Pin() {
						continue
					}
					b := e.Body.Bytes()
					if dedupbody.Sum(b) != e.Body.Body().Hash() || !bytes.HasPrefix(b, []byte(fmt.Sprintf("%02d:", k))) {
						bad.Store(k, string(b[:min(len(b), 12)]))
					}
					f.s.Unpin(e)
				}
			}
		}()
	}
	go func() {
		// Writers end after their rounds; then the readers stop.
		defer close(stop)
		for {
			if f.s.Stats().Sets >= int64(rounds) {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	wg.Wait()
	bad.Range(func(k, v any) bool {
		t.Errorf("key %v: read %q through a pin", k, v)
		return true
	})
	f.closeAndCheck()
}
