package redistier

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// Config configures a [Tier]. The zero value of every field but URL means
// its default.
type Config struct {
	// URL locates Redis, in the forms rueidis.ParseURL accepts:
	// redis://[user:pass@]host:port[/db], rediss:// for TLS, unix:///path,
	// more seed nodes as ?addr=host:port (a Cluster is detected by itself),
	// and Sentinel as redis://sentinel:26379?master_set=NAME.
	URL string
	// Namespace prefixes every key: namespace and schema version. Tiers
	// share data only within one namespace. Default "dc:1:".
	Namespace string
	// Timeout bounds every call to Redis (a Get's two round trips share
	// one). Default 50ms.
	Timeout time.Duration
	// QueueSize bounds the puts waiting for a writer; a Put finding the
	// queue full is dropped and counted. Default 1024.
	QueueSize int
	// Writers is how many goroutines drain the put queue. Default 4.
	Writers int
	// InlineMax is the largest body stored inside its entry record rather
	// than under its own content-addressed key. Default [DefaultInlineMax].
	InlineMax int
	// MaxBody is the largest body written to Redis; larger responses are
	// not put at all (they would stall Redis and the shared pipeline).
	// Default 1 MiB.
	MaxBody int
	// Retention caps every entry's TTL in Redis and is how long the purge
	// stream and prefix purges are kept; a follower cut off for longer
	// gets a Missed purge. Default 24h.
	Retention time.Duration
	// ProbeInterval is how often a probe checks Redis while the breaker is
	// open. Default 500ms.
	ProbeInterval time.Duration
	// InstanceID names this instance in the purge stream, so that Follow
	// skips its own purges. Default: random.
	InstanceID string
	// Logger receives lifecycle and degraded-service messages. Default:
	// discard.
	Logger *slog.Logger
}

// DefaultInlineMax is the default [Config.InlineMax]. A body under its own
// key costs Redis about 300 B more per entry than inlined when no other
// entry shares it, and a second round trip per read; it saves memory once
// a few entries share it. TestInlineThreshold measured, per entry, inline
// vs keyed: 256 B bodies 723 vs 1041 B with one referrer, 754 vs 642 B
// with ten; 512 B bodies 1105 vs 1361 B and 1043 vs 674 B.
const DefaultInlineMax = 256

// breaker thresholds: consecutive transport failures that open it.
const breakerFailures = 3

// leaseMargin is how much longer a body's lease is than the entry written
// against it, so that clock steps and queueing never let it expire first.
const leaseMargin = time.Minute

// ErrUnavailable is returned by [Tier.Purge] when Redis cannot be reached
// (the breaker is open).
var ErrUnavailable = errors.New("redistier: redis unavailable")

// Tier is a shared second cache tier on a Redis-protocol server: entry
// records pointing at content-addressed bodies stored once for every
// instance, and a purge stream all instances follow. Its methods may be
// called concurrently. Every call is bounded by [Config.Timeout] and none
// reports Redis failures to the caller except [Tier.Purge]: a failure is a
// miss, a dropped put, and a count in [Tier.Stats].
type Tier struct {
	cfg  Config
	log  *slog.Logger
	opts rueidis.ClientOption

	client atomic.Pointer[rueidis.Client] // nil until the first connect

	open     atomic.Bool   // breaker: true while Redis is skipped
	failures atomic.Int32  // consecutive transport failures
	wake     chan struct{} // nudges the prober when the breaker opens

	queue chan putReq
	ctx   context.Context // cancelled by Close
	stop  context.CancelFunc
	wg    sync.WaitGroup
	mu    sync.Mutex // guards closed and the wg.Add of Follow
	done  bool

	st stats
}

// New returns a Tier for cfg. It fails only on an invalid config: Redis
// being unreachable is not an error. The Tier starts with its breaker open
// and connects in the background; [Tier.Healthy] turns true once a probe
// succeeds. Close releases it.
func New(ctx context.Context, cfg Config) (*Tier, error) {
	if cfg.URL == "" {
		return nil, errors.New("redistier: Config.URL is empty")
	}
	opts, err := rueidis.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("redistier: Config.URL: %w", err)
	}
	setDefault(&cfg.Namespace, "dc:1:")
	setDefault(&cfg.Timeout, 50*time.Millisecond)
	setDefault(&cfg.QueueSize, 1024)
	setDefault(&cfg.Writers, 4)
	setDefault(&cfg.InlineMax, DefaultInlineMax)
	setDefault(&cfg.MaxBody, 1<<20)
	setDefault(&cfg.Retention, 24*time.Hour)
	setDefault(&cfg.ProbeInterval, 500*time.Millisecond)
	if cfg.InstanceID == "" {
		var b [8]byte
		rand.Read(b[:])
		cfg.InstanceID = hex.EncodeToString(b[:])
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// The data path keeps no client-side cache (it would live outside the
	// proxy's memory bound) and never retries (a retry past the deadline
	// is worse than a miss). Dials are bounded like calls, with room for
	// a TLS handshake.
	opts.DisableCache = true
	opts.DisableRetry = true
	opts.Dialer.Timeout = max(4*cfg.Timeout, 200*time.Millisecond)
	opts.ConnWriteTimeout = max(4*cfg.Timeout, 200*time.Millisecond)
	if opts.ClientName == "" {
		opts.ClientName = "dedupcache-" + cfg.InstanceID
	}

	t := &Tier{
		cfg:   cfg,
		log:   cfg.Logger,
		opts:  opts,
		wake:  make(chan struct{}, 1),
		queue: make(chan putReq, cfg.QueueSize),
	}
	t.open.Store(true)
	t.ctx, t.stop = context.WithCancel(context.WithoutCancel(ctx))
	t.wg.Add(1 + cfg.Writers)
	go t.probe()
	for range cfg.Writers {
		go t.writer()
	}
	return t, nil
}

func setDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// Close stops every goroutine the Tier started, Follow included, drops the
// puts still queued (counted as dropped) and closes the connections. It
// returns once they are all gone. Calls after Close are misses and no-ops.
func (t *Tier) Close() error {
	t.mu.Lock()
	if t.done {
		t.mu.Unlock()
		return nil
	}
	t.done = true
	t.mu.Unlock()
	t.stop()
	t.wg.Wait()
	for {
		select {
		case <-t.queue:
			t.st.putsDropped.Add(1)
			continue
		default:
		}
		break
	}
	if c := t.client.Load(); c != nil {
		(*c).Close()
	}
	return nil
}

// Healthy reports whether the breaker is closed: Redis answered recently.
func (t *Tier) Healthy() bool { return !t.open.Load() && t.ctx.Err() == nil }

// conn returns the client when the breaker is closed, or nil.
func (t *Tier) conn() rueidis.Client {
	if t.open.Load() || t.ctx.Err() != nil {
		return nil
	}
	if c := t.client.Load(); c != nil {
		return *c
	}
	return nil
}

// callCtx bounds one call by the Timeout and by Close.
func (t *Tier) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.Timeout)
	stop := context.AfterFunc(t.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// result records the outcome of one call for the breaker and the stats,
// and reports whether err was nil or a nil reply. Redis error replies (OOM
// when full, a wrong type) are counted but do not open the breaker: Redis
// is up and still serves reads. Transport errors and timeouts do.
func (t *Tier) result(err error) bool {
	if err == nil || rueidis.IsRedisNil(err) {
		t.failures.Store(0)
		return true
	}
	t.st.errors.Add(1)
	if _, ok := rueidis.IsRedisErr(err); ok {
		t.failures.Store(0)
		return false
	}
	if t.ctx.Err() != nil {
		return false
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		t.st.timeouts.Add(1)
	}
	if t.failures.Add(1) >= breakerFailures && t.open.CompareAndSwap(false, true) {
		t.st.breakerTrips.Add(1)
		t.log.Warn("redis tier unreachable, skipping it", "err", err)
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
	return false
}

// probe connects at start and, whenever the breaker is open, pings Redis
// every ProbeInterval until it answers, then closes the breaker.
func (t *Tier) probe() {
	defer t.wg.Done()
	defer func() {
		if r := recover(); r != nil {
			t.log.Error("redis tier prober panicked", "panic", r)
		}
	}()
	tick := time.NewTicker(t.cfg.ProbeInterval)
	defer tick.Stop()
	for {
		if t.open.Load() && t.ping() {
			t.failures.Store(0)
			t.open.Store(false)
			t.log.Info("redis tier reachable", "instance", t.cfg.InstanceID)
		}
		select {
		case <-t.ctx.Done():
			return
		case <-tick.C:
		case <-t.wake:
		}
	}
}

// ping creates the client if there is none yet (rueidis dials at
// construction and fails when Redis is down) and sends PING.
func (t *Tier) ping() bool {
	c := t.client.Load()
	if c == nil {
		nc, err := rueidis.NewClient(t.opts)
		if err != nil {
			t.st.errors.Add(1)
			return false
		}
		if t.ctx.Err() != nil {
			nc.Close()
			return false
		}
		t.client.Store(&nc)
		c = &nc
	}
	ctx, cancel := t.callCtx(t.ctx)
	defer cancel()
	err := (*c).Do(ctx, (*c).B().Ping().Build()).Error()
	if err != nil {
		t.st.errors.Add(1)
	}
	return err == nil
}
