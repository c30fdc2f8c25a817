//go:build !arenapoison

package arena

// poison is false without the arenapoison build tag: Free does not touch the
// bytes and a freed slot may be reused at once.
const poison = false
