// Command dedupcache is an HTTP reverse-proxy cache that stores each
// distinct response body once, however many URLs return it.
//
//	dedupcache -upstream http://127.0.0.1:3000
//	dedupcache -config config.yaml -max-memory 1GiB
//	dedupcache -demo
//	dedupcache -config config.yaml -check   # validate, print the effective settings
//	dedupcache -version
//
// main parses flags and the YAML file (see config.example.yaml), then wires
// the packages together; it handles no requests itself.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.yaml.in/yaml/v3"

	"dedupcache/admin"
	"dedupcache/config"
	"dedupcache/dedupbody"
	"dedupcache/demo"
	"dedupcache/internal/gcpace"
	"dedupcache/policy"
	"dedupcache/proxy"
	"dedupcache/redistier"
	"dedupcache/rules"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // a listener or server failed
	exitUsage  = 2 // bad flags or configuration; nothing was started
)

// flagFields maps each flag that overrides a config setting to the setting's
// dotted YAML path. Only flags given on the command line are applied. Each
// also has an environment variable (see [envName]).
var flagFields = map[string]string{
	"upstream":   "upstream",
	"listen":     "listen",
	"listen-tls": "listen_tls",
	"tls-cert":   "tls_cert",
	"tls-key":    "tls_key",
	"engine":     "server.engine",
	"admin":      "admin.listen",
	"metrics":    "metrics.listen",
	"redis":      "shared.redis_url",
	"snapshot":   "snapshot.path",
	"max-memory": "cache.max_memory",
	"log-level":  "log.level",
	"log-format": "log.format",
}

// envName is the environment variable that sets the same field as the flag
// named flagName: DEDUPCACHE_ and the name in upper case with '_' for '-'
// ($DEDUPCACHE_MAX_MEMORY for -max-memory). The file is applied first, then
// these variables, then the flags, then $DEDUPCACHE_ADMIN_TOKEN.
func envName(flagName string) string {
	return "DEDUPCACHE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// version and commit name the build in -version and dedupcache_build_info.
// Empty, they are read from the build information the go command embeds
// (the main module's version and the VCS revision); a build without VCS
// data, such as a container build without .git, sets them with
// -ldflags "-X main.version=v1.2.0 -X main.commit=abc123".
var version, commit string

// buildInfo returns the build's version, commit ("unknown" when there is
// no record of it; "-dirty" appended for a build from a modified tree) and
// Go version.
func buildInfo() admin.Build {
	b := admin.Build{Version: version, Commit: commit, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" {
			b.Version = bi.Main.Version
		}
		if b.Commit == "" {
			var rev, modified string
			for _, kv := range bi.Settings {
				switch kv.Key {
				case "vcs.revision":
					rev = kv.Value
				case "vcs.modified":
					modified = kv.Value
				}
			}
			if rev != "" && modified == "true" {
				rev += "-dirty"
			}
			b.Commit = rev
		}
	}
	if b.Version == "" {
		b.Version = "(devel)"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	return b
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole program; it returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	opts, code := parseFlags(args, stderr)
	if opts == nil {
		return code
	}
	switch {
	case opts.version:
		b := buildInfo()
		fmt.Fprintf(stdout, "dedupcache %s (commit %s, %s)\n", b.Version, b.Commit, b.GoVersion)
		return exitOK
	case opts.healthcheck != "":
		return healthcheck(opts.healthcheck, stdout, stderr)
	case opts.check:
		return check(opts, stdout, stderr)
	}
	if opts.cpuProfile != "" {
		stopProfile, err := startCPUProfile(opts.cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "dedupcache: -cpuprofile: %v\n", err)
			return exitFailed
		}
		defer stopProfile()
	}
	if opts.memProfile != "" {
		defer writeAllocProfile(opts.memProfile, stderr)
	}
	cfg, demoLn, code := loadConfig(opts, stderr)
	if demoLn != nil {
		defer demoLn.Close()
	}
	if code != exitOK {
		return code
	}

	level := new(slog.LevelVar)
	logger := newLogger(cfg.Log, level, stderr)
	slog.SetDefault(logger) // for anything still writing to the log package
	for _, w := range cfg.Warnings() {
		logger.Warn("unsafe setting", "detail", w)
	}
	if limit, ok := setMemoryLimit(int64(cfg.Cache.MaxMemory)); ok {
		logger.Info("memory limit set", "gomemlimit_bytes", limit)
	} else {
		logger.Info("memory limit left to GOMEMLIMIT", "gomemlimit", os.Getenv("GOMEMLIMIT"))
	}

	pacer, stopPacer := startPacer(logger)
	defer stopPacer()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := build(cfg, demoLn, level, logger, stderr, pacerMetrics(pacer)...)
	if err != nil {
		logger.Error("cannot start", "err", err)
		return exitFailed
	}
	a.loadSnapshot()
	a.serve()
	a.startSnapshots()
	if demoLn != nil {
		printDemo(stdout, a.servers[0].ln.Addr(), a.servers[1].ln.Addr(), demoLn.Addr())
	}
	code = a.wait(ctx, opts)
	stop() // a second signal kills the process at once
	a.shutdown()
	return code
}

// options are the command-line settings that are not config fields, and
// the flag set, whose config flags reload applies again.
type options struct {
	fs          *flag.FlagSet
	configPath  string
	demo        bool
	cpuProfile  string
	memProfile  string
	version     bool
	check       bool
	healthcheck string
}

// parseFlags parses the command line. On -h or an error it returns nil and
// the exit code.
func parseFlags(args []string, stderr io.Writer) (*options, int) {
	def := config.Default()
	o := &options{fs: flag.NewFlagSet("dedupcache", flag.ContinueOnError)}
	fs := o.fs
	fs.SetOutput(stderr)
	fs.StringVar(&o.configPath, "config", "", "YAML config `file` (see config.example.yaml); flags override it")
	fs.BoolVar(&o.demo, "demo", false, "run a built-in demo API on a loopback port and cache it")
	fs.String("upstream", "", "origin `URL` to cache, http(s)://host:port[/prefix]")
	fs.String("listen", def.Listen, "proxy listen `address`")
	fs.String("listen-tls", def.ListenTLS, "proxy listen `address` for TLS, HTTP/2 and HTTP/1.1 (needs -tls-cert, -tls-key); empty: none")
	fs.String("tls-cert", def.TLSCert, "PEM certificate `file` for -listen-tls (re-read on SIGHUP)")
	fs.String("tls-key", def.TLSKey, "PEM private key `file` for -tls-cert (re-read on SIGHUP)")
	fs.String("engine", def.Server.Engine, "proxy listener's HTTP/1.1 `server`: fasthttp or net/http")
	fs.String("admin", def.Admin.Listen, "admin listen `address` (dashboard, /metrics, /api/*, /healthz)")
	fs.String("metrics", def.Metrics.Listen, "read-only listen `address` for /metrics, /healthz and /readyz (no token); empty: none")
	fs.String("snapshot", def.Snapshot.Path, "warm-restart `file`: the cache is written to it at shutdown and loaded from it at start; empty: none")
	fs.String("redis", def.Shared.RedisURL, "shared tier `URL` (redis://host:port, rediss://, Sentinel, Cluster); empty: none")
	maxMemory := def.Cache.MaxMemory
	fs.Var(&maxMemory, "max-memory", "`size` bound on everything the cache holds, e.g. 256MiB or 2GB")
	fs.String("log-level", def.Log.Level, "log `level`: debug, info, warn or error")
	fs.String("log-format", def.Log.Format, "log `format`: text or json")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile to `file` until exit (benchmarks)")
	fs.StringVar(&o.memProfile, "memprofile", "", "write an allocation profile to `file` at exit (benchmarks)")
	fs.BoolVar(&o.version, "version", false, "print the version, commit and Go version, and exit")
	fs.BoolVar(&o.check, "check", false, "load and validate the configuration, print the effective settings and exit: 0 if valid, 2 if not")
	fs.StringVar(&o.healthcheck, "healthcheck", "", "GET `URL` and exit 0 on a 2xx answer, 1 otherwise (for container health checks)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: dedupcache [-config file] (-upstream URL | -demo) [flags]\n"+
			"       dedupcache [-config file] [flags] -check\n"+
			"       dedupcache -version | -healthcheck URL\n\n"+
			"The config file is applied first, then $DEDUPCACHE_<FLAG> for each flag below that\n"+
			"sets a config field (e.g. $DEDUPCACHE_MAX_MEMORY), then the flags; $%s\n"+
			"overrides admin.token.\n\n", config.EnvAdminToken)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, exitOK
		}
		return nil, exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dedupcache: unexpected argument %q (all settings are flags)\n", fs.Arg(0))
		return nil, exitUsage
	}
	return o, exitOK
}

// startCPUProfile writes a CPU profile to path until the returned func is
// called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// writeAllocProfile writes the heap profile (allocations since start and
// what is in use) to path.
func writeAllocProfile(path string, stderr io.Writer) {
	f, err := os.Create(path)
	if err == nil {
		err = pprof.Lookup("allocs").WriteTo(f, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "dedupcache: -memprofile: %v\n", err)
	}
}

// applyOverrides applies on cfg, in this order, the environment variables
// of the config flags ([envName]), the config flags given on the command
// line (flagFields) and $DEDUPCACHE_ADMIN_TOKEN. Start-up, -check and
// reload all use it, so they agree on the result.
func applyOverrides(cfg *config.Config, fs *flag.FlagSet, getenv func(string) string) []error {
	var errs []error
	names := make([]string, 0, len(flagFields))
	for name := range flagFields {
		names = append(names, name)
	}
	sort.Strings(names) // one order for the error messages
	for _, name := range names {
		if v := getenv(envName(name)); v != "" {
			errs = append(errs, cfg.Set(flagFields[name], v, "$"+envName(name)))
		}
	}
	fs.Visit(func(f *flag.Flag) {
		if field, ok := flagFields[f.Name]; ok {
			errs = append(errs, cfg.Set(field, f.Value.String(), "flag -"+f.Name))
		}
	})
	return append(errs, cfg.ApplyEnv(getenv))
}

// loadConfig reads the config file (or the defaults), applies the flags and
// the environment on top and validates the result. With -demo it binds the
// demo upstream's listener first, so that its address fills in upstream;
// the caller closes it. The code is exitOK unless the configuration is
// unusable.
func loadConfig(o *options, stderr io.Writer) (config.Config, net.Listener, int) {
	cfg := config.Default()
	if o.configPath != "" {
		var err error
		if cfg, err = config.Load(o.configPath); err != nil {
			fmt.Fprintln(stderr, err)
			return cfg, nil, exitUsage
		}
	}
	errs := applyOverrides(&cfg, o.fs, os.Getenv)
	o.fs.Visit(func(f *flag.Flag) {
		if f.Name == "upstream" && o.demo {
			errs = append(errs, errors.New("flag -upstream: -demo runs its own upstream; give one or the other"))
		}
	})
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(stderr, err)
		return cfg, nil, exitUsage
	}
	var demoLn net.Listener
	if o.demo {
		var err error
		if demoLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			fmt.Fprintf(stderr, "dedupcache: demo upstream: %v\n", err)
			return cfg, nil, exitFailed
		}
		if err := cfg.Set("upstream", "http://"+demoLn.Addr().String(), "flag -demo"); err != nil {
			fmt.Fprintln(stderr, err)
			return cfg, demoLn, exitUsage
		}
		if len(cfg.Rules) == 0 {
			cfg.Rules = demoRules()
		}
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, err)
		return cfg, demoLn, exitUsage
	}
	return cfg, demoLn, exitOK
}

// proxyConfig is the proxy.Config of a validated cfg, every value given
// explicitly: config.Default is the one source of defaults. The caller adds
// the Logger, the AccessLogOut writer and the ObserveUpstream hook.
func proxyConfig(cfg config.Config) proxy.Config {
	upstream, _ := cfg.UpstreamURL() // checked by Validate
	l := liveOf(cfg)
	return proxy.Config{
		Upstream:        upstream,
		MaxMemory:       int64(cfg.Cache.MaxMemory),
		MaxObjectSize:   int64(cfg.Cache.MaxObjectSize),
		ExpectedEntries: cfg.Cache.ExpectedEntries,
		Policy: policy.Options{
			CacheSetCookie:    cfg.Cache.CacheSetCookie,
			HeuristicFraction: cfg.Cache.HeuristicFraction,
			HeuristicMax:      time.Duration(cfg.Cache.HeuristicMax),
			TargetedFields:    slices.Clone(cfg.Cache.TargetedCacheControl),
			SurrogateToken:    cfg.Cache.SurrogateID,
		},
		Grace:          l.proxy.Grace,
		Keep:           l.proxy.Keep,
		SynthesizeETag: cfg.Cache.SynthesizeETag,
		TagHeader:      cfg.Cache.TagHeader,
		// Copies: proxy.New canonicalizes header names in place, and cfg's
		// lists must stay as loaded, or a reload reports them changed.
		UnkeyedHeaders:        slices.Clone(cfg.Cache.UnkeyedHeaders),
		UnkeyedBypass:         cfg.Cache.UnkeyedAction == config.UnkeyedBypass,
		AllowedHosts:          l.proxy.AllowedHosts,
		MaxInflight:           cfg.Cache.MaxInflight,
		DefaultTTL:            time.Duration(cfg.Cache.DefaultTTL),
		DebugHeaders:          cfg.Cache.DebugHeaders,
		Rules:                 compiledRules(cfg.Rules),
		TrustedProxies:        trustedProxies(cfg.Server.TrustedProxies),
		PurgeToken:            cfg.Admin.Token,
		CachePOSTPaths:        slices.Clone(cfg.Cache.PostPaths),
		AccessLogEvery:        l.proxy.AccessLogEvery,
		AccessLogFormat:       l.proxy.AccessLogFormat,
		DialTimeout:           time.Duration(cfg.UpstreamTimeouts.Dial),
		ResponseHeaderTimeout: time.Duration(cfg.UpstreamTimeouts.ResponseHeader),
		ReadTimeout:           time.Duration(cfg.UpstreamTimeouts.Read),
		IdleConnTimeout:       time.Duration(cfg.UpstreamTimeouts.Idle),
		MaxIdleConnsPerHost:   cfg.UpstreamTimeouts.MaxIdleConnsPerHost,
	}
}

// live is every setting a running process takes from a reload
// (config.Reloadable), in the form its user wants.
type live struct {
	proxy      proxy.Live // cache.grace, cache.keep, log.access, log.access_sample, log.access_format, server.allowed_hosts
	adminToken string     // admin.token
	logLevel   string     // log.level
	tlsCert    string     // tls_cert, re-read on every reload
	tlsKey     string     // tls_key, re-read on every reload
}

// liveOf returns the live settings of cfg, for the start and for every
// reload alike.
func liveOf(cfg config.Config) live {
	return live{
		proxy: proxy.Live{
			Grace:           time.Duration(cfg.Cache.Grace),
			Keep:            time.Duration(cfg.Cache.Keep),
			AccessLogEvery:  cfg.AccessLogEvery(),
			AccessLogFormat: accessFormat(cfg.Log.AccessFormat),
			DefaultTTL:      time.Duration(cfg.Cache.DefaultTTL),
			DebugHeaders:    cfg.Cache.DebugHeaders,
			Rules:           compiledRules(cfg.Rules),
			PurgeToken:      cfg.Admin.Token,
			AllowedHosts:    allowedHosts(cfg.Server.AllowedHosts),
		},
		adminToken: cfg.Admin.Token,
		logLevel:   cfg.Log.Level,
		tlsCert:    cfg.TLSCert,
		tlsKey:     cfg.TLSKey,
	}
}

// compiledRules compiles the rules; Validate has compiled them once
// already, so an error here cannot happen and leaves no rules.
func compiledRules(rs []config.Rule) *rules.Set {
	set, err := rules.Compile(rs)
	if err != nil {
		return nil
	}
	return set
}

// allowedHosts compiles server.allowed_hosts (nil: every host). Validate
// has checked it, so an error here cannot happen; if it did, the list
// would allow no host rather than every host.
func allowedHosts(list []string) *rules.Hosts {
	h, err := rules.CompileHosts("server.allowed_hosts", list)
	if err != nil {
		return &rules.Hosts{}
	}
	return h
}

// trustedProxies parses server.trusted_proxies (validated: CIDRs or IPs).
func trustedProxies(list []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range list {
		if pfx, err := netip.ParsePrefix(s); err == nil {
			out = append(out, pfx.Masked())
		} else if ip, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
		}
	}
	return out
}

// accessFormat maps log.access_format, validated, to the proxy's format.
func accessFormat(s string) proxy.AccessFormat {
	switch s {
	case "combined":
		return proxy.AccessCombined
	case "text":
		return proxy.AccessText
	case "json":
		return proxy.AccessJSON
	}
	return proxy.AccessRecord
}

// app is the running process: the proxy, its admin side and the servers in
// front of them.
type app struct {
	cfg    config.Config // as started; reload compares against it
	level  *slog.LevelVar
	logger *slog.Logger
	proxy  *proxy.Proxy
	admin  *admin.Admin
	tier   *redistier.Tier // nil without shared.redis_url
	// stopFollow ends the goroutine applying other instances' purges.
	stopFollow func()
	following  sync.WaitGroup
	servers    []*named // proxy, admin, then metrics if configured
	demo       *named   // nil without -demo
	failed     chan error
	serving    sync.WaitGroup

	// tls holds listen_tls's certificate, which reload replaces; its
	// server is last in servers. nil without listen_tls.
	tls *tlsProxy

	// snapStop ends the periodic snapshot writes (see startSnapshots).
	snapStop     chan struct{}
	snapshotting sync.WaitGroup
}

// build binds the listeners and makes the proxy, the admin side and the
// servers. Access lines in formats other than a log record go to
// accessOut. On error, whatever it opened is closed.
func build(cfg config.Config, demoLn net.Listener, level *slog.LevelVar, logger *slog.Logger, accessOut io.Writer, metrics ...prometheus.Collector) (_ *app, err error) {
	proxyLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("proxy listener: %w", err)
	}
	defer func() {
		if err != nil {
			proxyLn.Close()
		}
	}()
	adminLn, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	defer func() {
		if err != nil {
			adminLn.Close()
		}
	}()
	var metricsLn net.Listener
	if cfg.Metrics.Listen != "" {
		if metricsLn, err = net.Listen("tcp", cfg.Metrics.Listen); err != nil {
			return nil, fmt.Errorf("metrics listener: %w", err)
		}
		defer func() {
			if err != nil {
				metricsLn.Close()
			}
		}()
	}
	tlsp, err := newTLSProxy(cfg, logger) // nil without listen_tls
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && tlsp != nil {
			tlsp.ln.Close()
		}
	}()

	latency := admin.NewLatency()
	pcfg := proxyConfig(cfg)
	pcfg.Logger = logger
	pcfg.AccessLogOut = accessOut
	pcfg.ObserveUpstream = latency.Observe
	if os.Getenv("GOMEMLIMIT") == "" {
		pcfg.GoMemoryLimit = memoryLimit(pcfg.MaxMemory) // as run set it
	}
	var tier *redistier.Tier
	var held *heldBodies
	if cfg.Shared.RedisURL != "" {
		// New never fails because Redis is down: the tier starts with its
		// breaker open and probes.
		if tier, err = redistier.New(context.Background(), redistier.Config{
			URL: cfg.Shared.RedisURL, Namespace: cfg.Shared.Namespace,
			Timeout: time.Duration(cfg.Shared.Timeout), Logger: logger.With("tier", "shared"),
		}); err != nil {
			return nil, fmt.Errorf("shared tier: %w", err)
		}
		held = &heldBodies{}
		pcfg.Shared = sharedTier{tier, held}
	}
	p, err := proxy.New(pcfg)
	if err != nil {
		if tier != nil {
			tier.Close()
		}
		return nil, fmt.Errorf("proxy: %w", err)
	}
	if held != nil {
		held.mu.Lock()
		held.copy = p.CopyBody
		held.mu.Unlock()
	}
	adm := admin.New(p, admin.Config{
		Listen:       cfg.Admin.Listen,
		AllowedHosts: cfg.Admin.AllowedHosts,
		Token:        liveOf(cfg).adminToken,
		Upstream:     pcfg.Upstream,
		Latency:      latency,
		Logger:       logger,
		Build:        buildInfo(),
		Collectors:   metrics,
	})

	a := &app{cfg: cfg, level: level, logger: logger, proxy: p, admin: adm, tier: tier}
	if tier != nil {
		// Purges made by other instances, applied here only; when the
		// tier cannot prove none was missed it asks for everything to be
		// marked stale.
		ctx, stop := context.WithCancel(context.Background())
		a.stopFollow = stop
		a.following.Add(1)
		go func() {
			defer a.following.Done()
			tier.Follow(ctx, func(pg redistier.Purge) {
				if pg.Missed {
					logger.Warn("shared tier: purges may have been missed; marking every entry stale")
				}
				_, _ = p.Purge(proxy.PurgeRequest{Keys: pg.Keys, Prefixes: pg.Prefixes, Tags: pg.Tags, All: pg.All, Soft: pg.Soft, Local: true})
			})
		}()
	}
	a.servers = []*named{
		{"proxy", proxyServer(cfg.Server, p, logger.With("server", "proxy")), proxyLn},
		{"admin", newServer(cfg.Server, adm.Handler(), logger.With("server", "admin")), adminLn},
	}
	if metricsLn != nil {
		a.servers = append(a.servers, &named{"metrics", newServer(cfg.Server, adm.MetricsHandler(), logger.With("server", "metrics")), metricsLn})
	}
	if tlsp != nil {
		a.tls = tlsp
		a.servers = append(a.servers, tlsp.server(cfg.Server, p.Handler(), p.ConnState, logger.With("server", "proxy_tls")))
	}
	if demoLn != nil {
		a.demo = &named{"demo", newServer(cfg.Server, demo.Handler(), logger.With("server", "demo")), demoLn}
	}
	a.failed = make(chan error, len(a.servers)+1)
	return a, nil
}

// serve starts every server. Each reports on a.failed exactly once, when
// Serve returns with anything but http.ErrServerClosed.
func (a *app) serve() {
	for _, s := range append(a.servers, a.demo) {
		if s == nil {
			continue
		}
		a.serving.Go(func() {
			err := s.srv.Serve(s.ln)
			if !errors.Is(err, http.ErrServerClosed) {
				a.failed <- fmt.Errorf("%s server: %w", s.name, err)
			}
		})
	}
	upstream, _ := a.cfg.UpstreamURL()
	attrs := []any{"upstream", upstream.Redacted()}
	for _, s := range a.servers {
		attrs = append(attrs, s.name, s.ln.Addr().String())
	}
	a.logger.Info("listening", attrs...)
}

// wait runs until ctx ends (SIGINT, SIGTERM) or a server fails, reloading
// on SIGHUP. It returns the exit code.
func (a *app) wait(ctx context.Context, o *options) int {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			if o.configPath == "" {
				a.logger.Warn("SIGHUP ignored: no -config file to reload")
				continue
			}
			a.reload(o.configPath, o.fs)
		case <-ctx.Done():
			a.logger.Info("shutting down", "timeout", time.Duration(a.cfg.Server.ShutdownTimeout).String())
			return exitOK
		case err := <-a.failed:
			a.logger.Error("server failed", "err", err)
			return exitFailed
		}
	}
}

// shutdown stops in reverse order of construction: the front servers, then
// the proxy they use, then the demo upstream behind it.
func (a *app) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(a.cfg.Server.ShutdownTimeout))
	defer cancel()
	shutdown(ctx, a.logger, a.servers...)
	a.stopSnapshots()
	if a.cfg.Snapshot.Path != "" {
		a.writeSnapshot() // after the drain: what the last requests stored is in it
	}
	if a.tier != nil {
		a.stopFollow()
		a.following.Wait()
	}
	a.proxy.Close()
	if a.tier != nil {
		a.tier.Close() // after the proxy: its last puts are queued
	}
	if a.demo != nil {
		shutdown(ctx, a.logger, a.demo)
	}
	a.serving.Wait()
	a.logger.Info("stopped")
}

// named is a server with its listener, for logs and shutdown.
type named struct {
	name string
	srv  server
	ln   net.Listener
}

// server is what main needs of an HTTP server: *http.Server, or the
// proxy's fasthttp server through fastServer.
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// proxyServer returns the proxy listener's server for the configured engine.
func proxyServer(c config.Server, p *proxy.Proxy, logger *slog.Logger) server {
	if c.Engine == config.EngineNetHTTP {
		srv := newServer(c, p.Handler(), logger)
		srv.ConnState = p.ConnState // connections' buffers raise the memory limit
		return netHTTPServer{srv}
	}
	return fastServer{p.FastServer(proxy.FastLimits{
		ReadHeader:     time.Duration(c.ReadHeaderTimeout),
		Read:           time.Duration(c.ReadTimeout),
		Write:          time.Duration(c.WriteTimeout),
		Idle:           time.Duration(c.IdleTimeout),
		MaxHeaderBytes: int(c.MaxHeaderBytes),
		MaxBodyBytes:   int(c.MaxRequestBody),
	})}
}

// netHTTPServer is Go's server on the proxy listener: its connections go
// through proxy.NetHTTPListener, which refuses the framing Go's server
// would let through (an HTTP/1.0 request with Transfer-Encoding).
type netHTTPServer struct{ *http.Server }

// Serve implements server.
func (s netHTTPServer) Serve(ln net.Listener) error {
	return s.Server.Serve(proxy.NetHTTPListener(ln))
}

// fastServer adapts a fasthttp server to [server].
type fastServer struct{ s *fasthttp.Server }

// Serve implements server; like net/http's, it reports a shutdown as
// http.ErrServerClosed.
func (f fastServer) Serve(ln net.Listener) error {
	if err := f.s.Serve(ln); err != nil {
		return err
	}
	return http.ErrServerClosed
}

// Shutdown implements server: it stops accepting, closes idle connections
// and waits for requests in flight until ctx ends.
func (f fastServer) Shutdown(ctx context.Context) error { return f.s.ShutdownWithContext(ctx) }

// Close implements server. fasthttp cannot cut requests in flight short;
// their connections close as each one ends (CloseOnShutdown).
func (f fastServer) Close() error { return nil }

// newServer returns a server with the configured limits whose own error log
// (accept errors, handler panics) goes to logger.
func newServer(c config.Server, h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: time.Duration(c.ReadHeaderTimeout),
		ReadTimeout:       time.Duration(c.ReadTimeout),
		WriteTimeout:      time.Duration(c.WriteTimeout),
		IdleTimeout:       time.Duration(c.IdleTimeout),
		MaxHeaderBytes:    int(c.MaxHeaderBytes),
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelError),
	}
}

// shutdown stops servers concurrently, letting in-flight requests finish
// until ctx expires, then closing whatever is left.
func shutdown(ctx context.Context, logger *slog.Logger, servers ...*named) {
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() {
			if err := s.srv.Shutdown(ctx); err != nil {
				logger.Warn("shutdown cut short; closing open connections", "server", s.name, "err", err)
				s.srv.Close()
			}
			if s.ln != nil {
				// fasthttp's Shutdown does nothing if its Serve has not
				// taken the listener yet (a signal right at start): Serve
				// then ends here instead of accepting forever.
				_ = s.ln.Close()
			}
		})
	}
	wg.Wait()
}

// newLogger returns a text or JSON logger on w at the configured level.
// c has been validated.
func newLogger(c config.Log, level *slog.LevelVar, w io.Writer) *slog.Logger {
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// memoryLimit returns the Go runtime soft memory limit for a cache bounded
// at maxMemory bytes. The cache's own accounting covers entries, headers and
// bodies (the bodies in the arena, outside what the runtime's limit governs:
// the proxy lowers the limit by what the arena maps, Config.GoMemoryLimit);
// on top of that the process needs room for in-flight request and response
// buffers, the runtime, and garbage not yet collected. The allowance is an
// eighth of the cache, and never under 8MiB. Measured with bench/fullcache.sh
// (100 000 distinct 4 KiB misses through a 32MiB cache): peak RSS 47.5MiB
// with 8MiB, 52MiB with 16MiB, at the same CPU per miss; e2e TestRSSBound
// (32MiB, 64KiB bodies streamed through): 46.3MiB.
func memoryLimit(maxMemory int64) int64 {
	overhead := max(8<<20, maxMemory/8)
	return maxMemory + overhead
}

// setMemoryLimit applies memoryLimit unless the operator set GOMEMLIMIT,
// which the runtime has already applied and which wins. It returns the limit
// and whether it set one.
func setMemoryLimit(maxMemory int64) (int64, bool) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0, false
	}
	limit := memoryLimit(maxMemory)
	debug.SetMemoryLimit(limit)
	return limit, true
}

// startPacer runs the collector's pacer (package gcpace) unless the
// operator set GOGC, which then stays as the runtime applied it (and the
// pacer is nil). stop stops the pacer and waits for it.
func startPacer(logger *slog.Logger) (_ *gcpace.Pacer, stop func()) {
	if v := os.Getenv("GOGC"); v != "" {
		logger.Info("GOGC left as set", "gogc", v)
		return nil, func() {}
	}
	p := gcpace.New(gcpace.Config{Logger: logger})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(ctx)
	}()
	return p, func() {
		cancel()
		<-done
	}
}

// pacerMetrics are the pacer's counters for /metrics (none without a
// pacer); the GOGC it sets is the Go collector's go_gc_gogc_percent.
func pacerMetrics(p *gcpace.Pacer) []prometheus.Collector {
	if p == nil {
		return nil
	}
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "dedupcache", Name: "gc_pacer_switches_total",
			Help: "Changes of GOGC by the collector's pacer (100 while the process is busy, 25 at rest).",
		}, func() float64 { return float64(p.Stats().Switches) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "dedupcache", Name: "gc_pacer_releases_total",
			Help: "Forced collections that returned a busy spell's heap headroom to the OS.",
		}, func() float64 { return float64(p.Stats().Releases) }),
	}
}

// printDemo tells a person what to try against the demo.
// demoRules is the demo's rule set (used when the config has none): the
// demo API's /legacy/ endpoints send no caching headers, as many internal
// APIs do, and only this rule caches them.
func demoRules() []config.Rule {
	return []config.Rule{{
		Name:       "demo-legacy",
		PathPrefix: "/legacy/",
		TTL:        config.Duration(30 * time.Second),
		Key:        &config.RuleKey{QueryParams: []string{"sku"}, QueryMode: "only"},
	}}
}

func printDemo(w io.Writer, proxyAddr, adminAddr, demoAddr net.Addr) {
	cache, admin, up := "http://"+dialable(proxyAddr), "http://"+dialable(adminAddr), "http://"+dialable(demoAddr)
	fmt.Fprintf(w, "dedupcache demo: cache on %s in front of a demo API on %s\n", cache, up)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "  curl -si %s/users/999 | grep -i x-cache\t# MISS, then HIT\n", cache)
	fmt.Fprintf(tw, "  curl -si %s/users/1000 | grep -i x-cache\t# MISS, but its body is shared: see bodies_unique\n", cache)
	fmt.Fprintf(tw, "  curl -s -D- -o /dev/null %s/users/3/avatar | grep -i x-cache\t# most users share one default avatar\n", cache)
	fmt.Fprintf(tw, "  curl -si %s/time | grep -i x-cache\t# no-store: BYPASS\n", cache)
	fmt.Fprintf(tw, "  curl -si '%s/legacy/stock?sku=3&ts=1' | grep -i cache\t# no caching headers: the rule demo-legacy caches it 30s, keyed on sku only\n", cache)
	fmt.Fprintf(tw, "  curl -s  %s/api/stats\t# hit ratio, dedup ratio\n", admin)
	fmt.Fprintf(tw, "  open     %s/\t# live dashboard\n", admin)
	tw.Flush()
}

// dialable returns addr as host:port a client can connect to: a wildcard
// listener is reached through loopback.
func dialable(addr net.Addr) string {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ap.Addr().IsUnspecified() {
		return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ap.Port()).String()
	}
	return ap.String()
}

// reload re-reads the config file on SIGHUP, applies the command-line
// flags on top again, validates, and hands the live settings (see [live])
// to the proxy, the admin side and the logger. A change to any other field
// is logged as needing a restart. An invalid file changes nothing: the
// running configuration stays and the error is logged.
func (a *app) reload(path string, fs *flag.FlagSet) {
	next, err := config.Load(path)
	if err == nil {
		errs := applyOverrides(&next, fs, os.Getenv)
		if a.cfg.Upstream != "" && next.Upstream == "" {
			next.Upstream = a.cfg.Upstream // -demo's upstream
		}
		errs = append(errs, next.Validate())
		err = errors.Join(errs...)
	}
	if err != nil {
		a.logger.Error("reload failed; keeping the running configuration", "file", path, "err", err)
		return
	}
	for _, field := range config.RestartFields(a.cfg, next) {
		a.logger.Warn("reload: field changed but needs a restart", "field", field)
	}
	l := liveOf(next)
	_ = a.level.UnmarshalText([]byte(l.logLevel))
	a.proxy.Reload(l.proxy)
	a.admin.SetToken(l.adminToken)
	if a.tls != nil {
		a.tls.reload(l.tlsCert, l.tlsKey)
	}
	a.logger.Info("reloaded", "file", path, "log_level", l.logLevel, "admin_token_set", l.adminToken != "",
		"access_format", next.Log.AccessFormat)
}

// check is -check: it loads the configuration as a start would (file,
// environment, flags, validation), and listens on nothing. A valid
// configuration is printed to stdout as YAML with secrets redacted, its
// warnings go to stderr, and the code is exitOK; otherwise the problems go
// to stderr and the code is exitUsage.
func check(o *options, stdout, stderr io.Writer) int {
	if o.demo {
		fmt.Fprintln(stderr, "dedupcache: -check with -demo: the demo needs no configuration to check")
		return exitUsage
	}
	cfg, _, code := loadConfig(o, stderr)
	if code != exitOK {
		return code
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintln(stderr, "warning:", w)
	}
	out, err := effective(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "dedupcache: -check: %v\n", err)
		return exitFailed
	}
	source := "(no file: defaults)"
	if o.configPath != "" {
		source = o.configPath
	}
	fmt.Fprintf(stdout, "# dedupcache effective configuration: %s, environment and flags applied\n", source)
	_, _ = stdout.Write(out)
	fmt.Fprintf(stderr, "dedupcache: configuration %s is valid\n", source)
	return exitOK
}

// redacted replaces secrets in the output of -check.
const redacted = "<redacted>"

// effective renders a validated cfg as YAML in the config file's shape,
// with admin.token and the upstream's password redacted.
func effective(cfg config.Config) ([]byte, error) {
	if cfg.Admin.Token != "" {
		cfg.Admin.Token = redacted
	}
	if u, err := cfg.UpstreamURL(); err == nil {
		cfg.Upstream = u.Redacted()
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2) // as config.example.yaml
	if err := enc.Encode(cfg); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// healthcheck is -healthcheck: it GETs url and returns exitOK on a 2xx
// answer within 5 seconds, exitFailed otherwise. The image has no shell or
// curl, so its HEALTHCHECK runs the binary itself.
func healthcheck(url string, stdout, stderr io.Writer) int {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Fprintf(stderr, "dedupcache: healthcheck: %v\n", err)
		return exitFailed
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		fmt.Fprintf(stderr, "dedupcache: healthcheck: %s: %s\n", url, resp.Status)
		return exitFailed
	}
	fmt.Fprintf(stdout, "%s: %s\n", url, resp.Status)
	return exitOK
}

// sharedTier adapts the Redis tier to the proxy's Shared interface. It
// remembers, by SHA-256, the bodies this instance wrote to or read from the
// tier (see heldBodies), so that a body the cache still holds is not
// downloaded again.
type sharedTier struct {
	t      *redistier.Tier
	bodies *heldBodies
}

func (s sharedTier) Get(ctx context.Context, key string) (proxy.SharedEntry, any, bool) {
	rec, body, gen, ok := s.t.Get(ctx, key, s.bodies.get)
	if !ok {
		return proxy.SharedEntry{}, gen, false
	}
	return proxy.SharedEntry{
		Status: rec.Status, Header: rec.Header, Body: body, Stored: rec.Stored, Date: rec.Date, Flags: rec.Flags,
		Lifetime: rec.Lifetime, InitialAge: rec.InitialAge, StaleRevalidate: rec.StaleRevalidate, StaleError: rec.StaleError,
		Tags: rec.Tags, BodySum: rec.BodyHash,
	}, gen, true
}

func (s sharedTier) Held(sum [32]byte, body []byte) {
	if len(body) > redistier.DefaultInlineMax {
		s.bodies.add(sum, body)
	}
}

func (s sharedTier) VaryNames(ctx context.Context, primary string) ([]string, bool) {
	return s.t.VaryNames(ctx, primary)
}

func (s sharedTier) Put(key string, token any, varyOf string, names []string, e proxy.SharedEntry, ttl time.Duration) {
	gen, _ := token.(redistier.Gen)
	if len(e.Body) > redistier.DefaultInlineMax {
		s.bodies.add(sha256.Sum256(e.Body), e.Body)
	}
	s.t.Put(key, gen, varyOf, names, redistier.Record{
		Status: e.Status, Header: e.Header, Stored: e.Stored, Date: e.Date, Flags: e.Flags,
		Lifetime: e.Lifetime, InitialAge: e.InitialAge, StaleRevalidate: e.StaleRevalidate, StaleError: e.StaleError,
		Tags: e.Tags,
	}, e.Body, ttl)
}

func (s sharedTier) Purge(ctx context.Context, r proxy.PurgeRequest) error {
	return s.t.Purge(ctx, redistier.Purge{Keys: r.Keys, Prefixes: r.Prefixes, Tags: r.Tags, All: r.All, Soft: r.Soft})
}

func (s sharedTier) Stats() proxy.SharedStats {
	st := s.t.Stats()
	return proxy.SharedStats{
		Healthy: s.t.Healthy(), Hits: int64(st.Hits), Misses: int64(st.Misses), Errors: int64(st.Errors),
		Timeouts: int64(st.Timeouts), BodiesFetched: int64(st.BodiesFetched), PutsWritten: int64(st.PutsWritten),
		PutsDropped: int64(st.PutsDropped), BytesUploaded: st.BytesUploaded, BytesNotUploaded: st.BytesNotUploaded,
		PurgesSent: int64(st.PurgesSent), PurgesApplied: int64(st.PurgesApplied), PurgesMissed: int64(st.PurgesMissed),
		BodiesLocal: int64(st.BodiesLocal), PutsRefused: int64(st.PutsRefused), PutsFailed: int64(st.PutsFailed + st.PutsSkipped),
		StreamLagSeconds: st.StreamLag.Seconds(),
	}
}

// heldBodies remembers, by SHA-256, the bodies this instance wrote to or
// read from the tier, as the cache knows them (xxhash64 and length), so
// that a body the cache still holds is copied from it instead of
// downloaded. The cache frees bodies on its own: copy asks it whether it
// still holds one, and copies it under a reference. At most maxHeldBodies
// sums are kept; past that an arbitrary one is forgotten.
type heldBodies struct {
	mu   sync.Mutex
	m    map[[32]byte]heldBody
	copy func(h uint64, n int64, sum [32]byte) []byte // the proxy's CopyBody, set once it exists
}

type heldBody struct {
	h uint64
	n int64
}

const maxHeldBodies = 1 << 16

func (h *heldBodies) add(sum [32]byte, b []byte) {
	if len(b) == 0 {
		return
	}
	hb := heldBody{dedupbody.Sum(b), int64(len(b))}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = make(map[[32]byte]heldBody)
	}
	if len(h.m) >= maxHeldBodies {
		for k := range h.m {
			delete(h.m, k)
			break
		}
	}
	h.m[sum] = hb
}

// get returns a copy of the body with that sum if the cache still holds it.
func (h *heldBodies) get(sum [32]byte) []byte {
	h.mu.Lock()
	hb, ok := h.m[sum]
	cp := h.copy
	h.mu.Unlock()
	if !ok || cp == nil {
		return nil
	}
	b := cp(hb.h, hb.n, sum)
	if b == nil {
		h.mu.Lock()
		delete(h.m, sum)
		h.mu.Unlock()
	}
	return b
}
