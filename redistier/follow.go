package redistier

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// followBlock is how long one XREAD waits for new purges.
const followBlock = time.Second

// Follow reads the purge log from where this Tier started following and
// calls apply, in log order, for every purge another instance made (its
// own are skipped: Purge's caller applied them). When it cannot prove it
// missed nothing, it calls apply(Purge{All: true, Soft: true, Missed:
// true}) so that the caller marks the entries it holds stale. That
// happens when the log was trimmed past the last entry it read (it was
// cut off longer than Config.Retention while purges went on), or when the
// log is not the one it was reading (Redis restarted empty, failed over
// and lost writes, or the log was evicted). Being disconnected alone is
// not a gap: it resumes from its last entry.
//
// Follow blocks until ctx ends or the Tier is closed (Close waits for it
// to return). apply runs on Follow's goroutine, one call at a time; it must
// not call Follow. Run at most one Follow per Tier.
func (t *Tier) Follow(ctx context.Context, apply func(Purge)) {
	t.mu.Lock()
	if t.done {
		t.mu.Unlock()
		return
	}
	t.wg.Add(1)
	t.mu.Unlock()
	defer t.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(t.ctx, cancel)()
	t.st.following.Store(true)
	defer t.st.following.Store(false)

	f := follower{t: t, apply: apply}
	for ctx.Err() == nil {
		c := t.conn()
		if c == nil {
			f.checked = false
			sleep(ctx, t.cfg.ProbeInterval)
			continue
		}
		if !f.checked {
			if err := f.check(ctx, c); err != nil {
				sleep(ctx, t.cfg.ProbeInterval)
				continue
			}
			f.checked = true
		}
		if err := f.read(ctx, c); err != nil {
			f.checked = false
			sleep(ctx, t.cfg.ProbeInterval)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
	case <-tm.C:
	}
}

// follower is Follow's position in the log: the last entry read, its
// sequence number, and the incarnation of the log it was read from.
type follower struct {
	t       *Tier
	apply   func(Purge)
	last    string // entry ID; "" before the first check
	lastN   int64  // its sequence number
	inc     string
	checked bool
}

func (f *follower) missed(why string) {
	f.t.st.purgesMissed.Add(1)
	f.t.log.Warn("redis tier: purges may have been missed, marking local entries stale", "why", why)
	f.apply(Purge{All: true, Soft: true, Missed: true})
}

// check compares the log with the follower's position, after a start or a
// failure: the incarnation must be the same, and the first entry kept
// after the last one read must be the next in sequence (nothing was
// trimmed in between).
func (f *follower) check(ctx context.Context, c rueidis.Client) error {
	t := f.t
	cctx, cancel := t.callCtx(ctx)
	defer cancel()
	fresh := nonce()
	st, err := logState.Exec(cctx, c, []string{t.streamKey(), t.incKey()}, []string{string(fresh[:]), f.last}).ToArray()
	if !t.result(err) {
		return err
	}
	if len(st) != 4 {
		return errProto(nil)
	}
	inc, _ := st[0].ToString()
	n, _ := st[1].AsInt64()
	tail, _ := st[2].ToString()
	nextN, _ := st[3].AsInt64()
	switch {
	case f.last == "":
		// First start: follow from now on. The caller may have stored
		// entries before this position was taken (it serves while Redis
		// is still being reached), and a purge made in between would never
		// be read: have those entries revalidated.
		f.last, f.lastN, f.inc = tail, n, inc
		f.apply(Purge{All: true, Soft: true})
	case inc != f.inc:
		f.missed("purge log replaced (Redis lost it)")
		f.last, f.lastN, f.inc = "0-0", 0, inc
	case n < f.lastN:
		f.missed("purge log went back")
		f.last, f.lastN = tail, n
	case n > f.lastN && nextN != f.lastN+1:
		f.missed("purge log trimmed past the last entry read")
		if nextN > 0 {
			f.lastN = nextN - 1
		} else {
			f.last, f.lastN = tail, n
		}
	}
	return nil
}

// read waits for the next purges and applies them.
func (f *follower) read(ctx context.Context, c rueidis.Client) error {
	t := f.t
	cctx, cancel := context.WithTimeout(ctx, followBlock+t.cfg.Timeout+100*time.Millisecond)
	defer cancel()
	res, err := c.Do(cctx, c.B().Xread().Count(128).Block(followBlock.Milliseconds()).
		Streams().Key(t.streamKey()).Id(f.last).Build()).AsXRead()
	if rueidis.IsRedisNil(err) {
		t.st.streamLag.Store(0)
		return nil
	}
	if err != nil {
		if ctx.Err() == nil {
			t.result(err)
		}
		return err
	}
	for _, e := range res[t.streamKey()] {
		n, _ := strconv.ParseInt(e.FieldValues["n"], 10, 64)
		switch {
		case e.FieldValues["s"] != f.inc:
			// Another incarnation of the log than the one checked.
			f.missed("purge log replaced (Redis lost it)")
			f.inc = e.FieldValues["s"]
		case n != f.lastN+1:
			f.missed("purge log trimmed past the last entry read")
		}
		f.last, f.lastN = e.ID, n
		if ms, err := strconv.ParseInt(strings.SplitN(e.ID, "-", 2)[0], 10, 64); err == nil {
			t.st.streamLag.Store(int64(time.Since(time.UnixMilli(ms))))
		}
		if e.FieldValues["i"] == t.cfg.InstanceID {
			continue
		}
		var p Purge
		if err := json.Unmarshal([]byte(e.FieldValues["p"]), &p); err != nil {
			t.log.Warn("redis tier: unreadable purge log entry, treating it as a purge of everything", "id", e.ID)
			p = Purge{All: true, Soft: true}
		}
		t.st.purgesApplied.Add(1)
		f.apply(p)
	}
	return nil
}
