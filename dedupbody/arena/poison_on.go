//go:build arenapoison

package arena

// poison is true with the arenapoison build tag: Free fills the slot with
// PoisonByte and holds it in quarantine before reuse.
const poison = true
