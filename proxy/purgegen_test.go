package proxy

import (
	"strconv"
	"testing"
)

// TestPurgeLogForgets: a fetch that began more purges ago than the log
// remembers is treated as purged (it cannot tell), one within it only by
// what the purges selected.
func TestPurgeLogForgets(t *testing.T) {
	p, _ := newTestProxy(t, "http://127.0.0.1:1", nil)
	f := &fill{host: "h.example", uri: "/kept"}
	gen := p.purgeGen.Load()
	for i := range purgeLogSize {
		p.beginPurge(purgeRecOf(PurgeRequest{URLs: []string{"http://h.example/other" + strconv.Itoa(i)}}))
	}
	if p.purgedSince(gen, f, nil) {
		t.Errorf("%d purges of other URLs: the fetch counts as purged", purgeLogSize)
	}
	p.beginPurge(purgeRecOf(PurgeRequest{URLs: []string{"http://h.example/one-more"}}))
	if !p.purgedSince(gen, f, nil) {
		t.Errorf("%d purges, more than the log holds: the fetch does not count as purged", purgeLogSize+1)
	}
	gen = p.purgeGen.Load()
	p.beginPurge(purgeRecOf(PurgeRequest{Keys: []string{"h.example\x03https\x03 /kept"}}))
	if !p.purgedSince(gen, f, nil) {
		t.Errorf("a shared-tier purge of the key in another forwarded context does not select the fetch")
	}
}
