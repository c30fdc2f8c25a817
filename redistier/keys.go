package redistier

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// The key schema (N is Config.Namespace). {…} is a Cluster hash tag: a
// primary key's generation, entries and Vary record share a slot so that
// one script can check and write them; bodies and tags spread over slots.
//
//	N{K}g        STRING  the primary's generation: a random 8-byte nonce
//	N{K}e:V      STRING  an entry record (see entry.encode)
//	N{K}v        STRING  the primary's Vary names: generation + names
//	Nb:SHA256    STRING  a body, content-addressed (hex SHA-256)
//	Nt:{T}       ZSET    tag index: primary keys, scored by expiry (ms)
//	Nt:{T}p      STRING  tag purge mark: Redis time (ms) of the last purge
//	Nctl         HASH    e: the epoch (8-byte nonce, replaced by a purge
//	                     of everything); p:PREFIX: Redis time (ms) of a
//	                     prefix purge
//	N{log}s      STREAM  the purge log
//	N{log}i      HASH    the purge log's incarnation (random nonce) and
//	                     last sequence number
//
// K is the hex of the first 16 bytes of SHA-256(primary), V the same of the
// full key, T of the tag. Hashing keeps key names short and free of
// hash-tag braces; the full key is in the entry and compared on read, so a
// K or V collision is a miss, never a wrong entry. Every key but the
// control hash, the log and its incarnation has a TTL.
type keys struct {
	gen, entry, vary string
}

func hash16(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// primaryOf returns the primary key of key: a variant key is the primary,
// a NUL byte, then anything (the proxy's variant keys are built so).
func primaryOf(key string) string {
	p, _, _ := strings.Cut(key, "\x00")
	return p
}

// pathOf returns the part of a primary key prefix purges match: what
// follows the first space ("host uri" keys), or all of it.
func pathOf(primary string) string {
	if _, uri, ok := strings.Cut(primary, " "); ok {
		return uri
	}
	return primary
}

func (t *Tier) keysOf(key string) keys {
	slot := t.cfg.Namespace + "{" + hash16(primaryOf(key)) + "}"
	return keys{gen: slot + "g", entry: slot + "e:" + hash16(key), vary: slot + "v"}
}

func (t *Tier) bodyKey(sum [32]byte) string {
	return t.cfg.Namespace + "b:" + hex.EncodeToString(sum[:])
}
func (t *Tier) ctlKey() string    { return t.cfg.Namespace + "ctl" }
func (t *Tier) streamKey() string { return t.cfg.Namespace + "{log}s" }
func (t *Tier) incKey() string    { return t.cfg.Namespace + "{log}i" }

func (t *Tier) tagKeys(tag string) (index, mark string) {
	index = t.cfg.Namespace + "t:{" + hash16(tag) + "}"
	return index, index + "p"
}

func nonce() (b [8]byte) {
	rand.Read(b[:])
	return b
}
