package arena

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// FuzzOps runs a sequence of Alloc and Free read from the input: each op is
// three bytes, a selector and a 16-bit value. It checks contents before
// every Free and the Stats invariants at the end and after freeing all.
func FuzzOps(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 0xff, 0xff, 1, 0, 0, 2, 0x10, 0})
	f.Add([]byte{3, 0x00, 0x40, 3, 0x00, 0x40, 1, 0, 0, 1, 1, 0, 0, 1, 0})
	f.Add([]byte{2, 0x01, 0x00, 2, 0x02, 0x00, 2, 0x03, 0x00, 1, 0, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		a := New(Config{RetainBytes: 128 << 10, Quarantine: 3})
		defer a.Close()
		r := rand.New(rand.NewPCG(uint64(len(ops)), 1))
		var live []held
		for len(ops) >= 3 {
			op, v := ops[0], int(binary.LittleEndian.Uint16(ops[1:3]))
			ops = ops[3:]
			switch {
			case op%4 == 1 && len(live) > 0:
				k := v % len(live)
				if !live[k].ok() {
					t.Fatalf("slot of %d bytes: contents changed before Free", len(live[k].slot.Bytes()))
				}
				a.Free(live[k].slot)
				live[k] = live[len(live)-1]
				live = live[:len(live)-1]
			case op%4 == 2:
				live = append(live, alloc(t, a, r, v)) // 0 .. 64 KiB
			case op%4 == 3:
				live = append(live, alloc(t, a, r, v*8)) // up to 512 KiB: dedicated maps
			default:
				live = append(live, alloc(t, a, r, v%200))
			}
		}
		checkStats(t, a, live)
		for _, h := range live {
			if !h.ok() {
				t.Fatalf("slot of %d bytes: contents changed", len(h.slot.Bytes()))
			}
			a.Free(h.slot)
		}
		checkStats(t, a, nil)
	})
}
