package redistier

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/redis/rueidis"
)

// Purge selects what [Tier.Purge] removes and what [Tier.Follow] hands to
// its apply function. It is plain data.
type Purge struct {
	// Keys are cache keys; a purge of a key covers all its variants.
	Keys []string `json:"k,omitempty"`
	// Prefixes match the part of a primary key after its first space (the
	// path and query of a "host uri" key), on every host.
	Prefixes []string `json:"p,omitempty"`
	// Tags select entries stored with one of these tags.
	Tags []string `json:"t,omitempty"`
	// All purges everything in the namespace.
	All bool `json:"a,omitempty"`
	// Soft asks followers to mark their copies stale (revalidate) rather
	// than drop them. In Redis every purge is hard: the shared copy goes.
	Soft bool `json:"s,omitempty"`
	// Missed is set only by Follow: it could not prove it missed no purge
	// (then All and Soft are set too).
	Missed bool `json:"-"`
}

// maxBans is how many prefix purges the control hash keeps within the
// retention; more are folded into a purge of everything.
const maxBans = 1000

// Purge applies p in Redis at once and appends it to the purge log, which
// every instance's [Tier.Follow] replays. Key and tag purges give the
// primary keys concerned a new random generation, so their entries become
// misses at once and expire by TTL; a purge of everything replaces the
// epoch; a prefix purge is recorded with Redis's time and checked by Get
// against the time each entry's fill began. Each round trip is bounded by
// Config.Timeout, the whole by ctx. It returns [ErrUnavailable] while the
// breaker is open, or the first failure; the caller then knows other
// instances may not see the purge.
func (t *Tier) Purge(ctx context.Context, p Purge) error {
	c := t.conn()
	if c == nil {
		return ErrUnavailable
	}
	ret := int64(t.cfg.Retention.Milliseconds())
	keep := strconv.FormatInt(ret+leaseMargin.Milliseconds(), 10)
	do := func(f func(ctx context.Context) error) error {
		cctx, cancel := t.callCtx(ctx)
		defer cancel()
		if err := f(cctx); !t.result(err) {
			return err
		}
		return nil
	}
	// newGens gives each primary key a new generation.
	newGens := func(primaries []string) error {
		if len(primaries) == 0 {
			return nil
		}
		cmds := make(rueidis.Commands, 0, len(primaries))
		for _, pk := range primaries {
			g := nonce()
			cmds = append(cmds, c.B().Set().Key(t.keysOf(pk).gen).Value(string(g[:])).Px(t.cfg.Retention).Build())
		}
		return do(func(ctx context.Context) error {
			for _, r := range c.DoMulti(ctx, cmds...) {
				if err := r.Error(); err != nil {
					return err
				}
			}
			return nil
		})
	}

	if p.All || len(p.Prefixes) > 0 {
		e := nonce()
		args := []string{"0", string(e[:]), keep, strconv.Itoa(maxBans)}
		if p.All {
			args[0] = "1"
		}
		args = append(args, p.Prefixes...)
		var n int64
		if err := do(func(ctx context.Context) (err error) {
			n, err = purgeCtl.Exec(ctx, c, []string{t.ctlKey()}, args).AsInt64()
			return err
		}); err != nil {
			return fmt.Errorf("redistier: purge: %w", err)
		}
		if n == 2 {
			t.log.Warn("redis tier: too many prefix purges kept, purged everything", "limit", maxBans)
		}
	}
	primaries := make([]string, 0, len(p.Keys))
	for _, k := range p.Keys {
		primaries = append(primaries, primaryOf(k))
	}
	if err := newGens(primaries); err != nil {
		return fmt.Errorf("redistier: purge keys: %w", err)
	}
	for _, tag := range p.Tags {
		idx, mark := t.tagKeys(tag)
		// The mark first: a put whose fill began before it is refused
		// from now on; the keys already in the index are popped below.
		if err := do(func(ctx context.Context) error {
			return markTag.Exec(ctx, c, []string{mark}, []string{keep}).Error()
		}); err != nil {
			return fmt.Errorf("redistier: purge tag: %w", err)
		}
		for {
			var got []rueidis.ZScore
			if err := do(func(ctx context.Context) (err error) {
				got, err = c.Do(ctx, c.B().Zpopmin().Key(idx).Count(512).Build()).AsZScores()
				return err
			}); err != nil {
				return fmt.Errorf("redistier: purge tag: %w", err)
			}
			members := make([]string, len(got))
			for i, z := range got {
				members[i] = z.Member
			}
			if err := newGens(members); err != nil {
				return fmt.Errorf("redistier: purge tag: %w", err)
			}
			if len(got) < 512 {
				break
			}
		}
	}

	payload, _ := json.Marshal(p)
	inc := nonce()
	if err := do(func(ctx context.Context) error {
		return appendLog.Exec(ctx, c, []string{t.streamKey(), t.incKey()},
			[]string{string(inc[:]), t.cfg.InstanceID, string(payload), strconv.FormatInt(ret, 10)}).Error()
	}); err != nil {
		return fmt.Errorf("redistier: purge log: %w", err)
	}
	t.st.purgesSent.Add(1)
	return nil
}
