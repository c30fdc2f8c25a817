//go:build !arenapoison

package arena

import (
	"bytes"
	"testing"
)

// TestFreeDoesNotTouch checks that without the poison tag Free leaves the
// bytes alone (read through a stale slice while the slab is still in use).
func TestFreeDoesNotTouch(t *testing.T) {
	if Poisoned() {
		t.Fatal("Poisoned() = true without the arenapoison tag")
	}
	a := New(Config{})
	defer a.Close()
	keep, _ := a.Alloc(1000) // keeps the slab mapped
	defer a.Free(keep)
	s, _ := a.Alloc(1000)
	copy(s.Bytes(), bytes.Repeat([]byte("x"), 1000))
	stale := s.Bytes()
	a.Free(s)
	if !bytes.Equal(stale, bytes.Repeat([]byte("x"), 1000)) {
		t.Error("Free changed the bytes without the poison tag")
	}
}
