// Command dedupcache is an HTTP reverse-proxy cache that stores each
// distinct response body once, however many URLs return it.
//
//	dedupcache -upstream http://127.0.0.1:3000
//	dedupcache -config config.yaml -max-memory 1GiB
//	dedupcache -demo
//
// main parses flags and the YAML file (see config.example.yaml), then wires
// the packages together; it handles no requests itself.
package main

import (
	"context"
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
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"dedupcache/admin"
	"dedupcache/config"
	"dedupcache/demo"
	"dedupcache/policy"
	"dedupcache/proxy"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // a listener or server failed
	exitUsage  = 2 // bad flags or configuration; nothing was started
)

// flagFields maps each flag that overrides a config setting to the setting's
// dotted YAML path. Only flags given on the command line are applied.
var flagFields = map[string]string{
	"upstream":   "upstream",
	"listen":     "listen",
	"admin":      "admin.listen",
	"max-memory": "cache.max_memory",
	"log-level":  "log.level",
	"log-format": "log.format",
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole program; it returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	def := config.Default()
	fs := flag.NewFlagSet("dedupcache", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML config `file` (see config.example.yaml); flags override it")
	demoMode := fs.Bool("demo", false, "run a built-in demo API on a loopback port and cache it")
	fs.String("upstream", "", "origin `URL` to cache, http(s)://host:port[/prefix]")
	fs.String("listen", def.Listen, "proxy listen `address`")
	fs.String("admin", def.Admin.Listen, "admin listen `address` (dashboard, /metrics, /api/*, /healthz)")
	maxMemory := def.Cache.MaxMemory
	fs.Var(&maxMemory, "max-memory", "`size` bound on everything the cache holds, e.g. 256MiB or 2GB")
	fs.String("log-level", def.Log.Level, "log `level`: debug, info, warn or error")
	fs.String("log-format", def.Log.Format, "log `format`: text or json")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to `file` until exit (benchmarks)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: dedupcache [-config file] (-upstream URL | -demo) [flags]\n\n"+
			"Flags override the config file; $%s overrides admin.token.\n\n", config.EnvAdminToken)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dedupcache: unexpected argument %q (all settings are flags)\n", fs.Arg(0))
		return exitUsage
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(stderr, "dedupcache: -cpuprofile: %v\n", err)
			return exitFailed
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}

	cfg := config.Default()
	if *configPath != "" {
		var err error
		if cfg, err = config.Load(*configPath); err != nil {
			fmt.Fprintln(stderr, err)
			return exitUsage
		}
	}
	var errs []error
	fs.Visit(func(f *flag.Flag) {
		if field, ok := flagFields[f.Name]; ok {
			errs = append(errs, cfg.Set(field, f.Value.String(), "flag -"+f.Name))
		}
		if f.Name == "upstream" && *demoMode {
			errs = append(errs, errors.New("flag -upstream: -demo runs its own upstream; give one or the other"))
		}
	})
	errs = append(errs, cfg.ApplyEnv(os.Getenv))
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}

	// The demo upstream binds first so its address can fill in upstream
	// before validation; it serves once the logger exists.
	var demoLn net.Listener
	if *demoMode {
		var err error
		if demoLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			fmt.Fprintf(stderr, "dedupcache: demo upstream: %v\n", err)
			return exitFailed
		}
		defer demoLn.Close()
		if err := cfg.Set("upstream", "http://"+demoLn.Addr().String(), "flag -demo"); err != nil {
			fmt.Fprintln(stderr, err)
			return exitUsage
		}
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	upstream, _ := cfg.UpstreamURL() // checked by Validate

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

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	proxyLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		logger.Error("cannot listen", "listener", "proxy", "err", err)
		return exitFailed
	}
	defer proxyLn.Close()
	adminLn, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		logger.Error("cannot listen", "listener", "admin", "err", err)
		return exitFailed
	}
	defer adminLn.Close()

	pol := policy.DefaultOptions()
	pol.CacheSetCookie = cfg.Cache.CacheSetCookie
	pol.HeuristicFraction = cfg.Cache.HeuristicFraction
	pol.HeuristicMax = time.Duration(cfg.Cache.HeuristicMax)
	pol.TargetedFields = cfg.Cache.TargetedCacheControl
	latency := admin.NewLatency()
	p, err := proxy.New(proxy.Config{
		Upstream:              upstream,
		MaxMemory:             int64(cfg.Cache.MaxMemory),
		MaxObjectSize:         int64(cfg.Cache.MaxObjectSize),
		ExpectedEntries:       cfg.Cache.ExpectedEntries,
		Policy:                pol,
		Grace:                 time.Duration(cfg.Cache.Grace),
		Keep:                  time.Duration(cfg.Cache.Keep),
		SynthesizeETag:        cfg.Cache.SynthesizeETag,
		TagHeader:             tagHeader(cfg.Cache.TagHeader),
		CachePOSTPaths:        cfg.Cache.PostPaths,
		AccessLogEvery:        cfg.AccessLogEvery(),
		DialTimeout:           time.Duration(cfg.UpstreamTimeouts.Dial),
		ResponseHeaderTimeout: time.Duration(cfg.UpstreamTimeouts.ResponseHeader),
		ReadTimeout:           time.Duration(cfg.UpstreamTimeouts.Read),
		IdleConnTimeout:       time.Duration(cfg.UpstreamTimeouts.Idle),
		MaxIdleConnsPerHost:   cfg.UpstreamTimeouts.MaxIdleConnsPerHost,
		Logger:                logger,
		ObserveUpstream:       latency.Observe,
	})
	if err != nil {
		logger.Error("cannot start the proxy", "err", err)
		return exitFailed
	}

	adm := admin.New(p, admin.Config{
		Listen:       cfg.Admin.Listen,
		AllowedHosts: cfg.Admin.AllowedHosts,
		Token:        cfg.Admin.Token,
		Upstream:     upstream,
		Latency:      latency,
		Logger:       logger,
	})
	servers := []*named{
		{"proxy", newServer(cfg.Server, p.Handler(), logger.With("server", "proxy")), proxyLn},
		{"admin", newServer(cfg.Server, adm.Handler(), logger.With("server", "admin")), adminLn},
	}
	var demoSrv *named
	if demoLn != nil {
		demoSrv = &named{"demo", newServer(cfg.Server, demo.Handler(), logger.With("server", "demo")), demoLn}
	}

	// Each server reports on failed exactly once, when Serve returns.
	failed := make(chan error, len(servers)+1)
	var serving sync.WaitGroup
	for _, s := range append(servers, demoSrv) {
		if s == nil {
			continue
		}
		serving.Go(func() {
			err := s.srv.Serve(s.ln)
			if !errors.Is(err, http.ErrServerClosed) {
				failed <- fmt.Errorf("%s server: %w", s.name, err)
			}
		})
	}
	logger.Info("listening", "proxy", proxyLn.Addr().String(), "admin", adminLn.Addr().String(), "upstream", upstream.Redacted())
	if demoLn != nil {
		printDemo(stdout, proxyLn.Addr(), adminLn.Addr(), demoLn.Addr())
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	code := exitOK
wait:
	for {
		select {
		case <-hup:
			if *configPath == "" {
				logger.Warn("SIGHUP ignored: no -config file to reload")
				continue
			}
			reload(*configPath, fs, cfg, p, level, logger)
		case <-ctx.Done():
			logger.Info("shutting down", "timeout", time.Duration(cfg.Server.ShutdownTimeout).String())
			break wait
		case err := <-failed:
			logger.Error("server failed", "err", err)
			code = exitFailed
			break wait
		}
	}
	stop() // a second signal kills the process at once

	// Reverse order of construction: the front servers, then the proxy they
	// use, then the demo upstream behind it.
	sctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.Server.ShutdownTimeout))
	defer cancel()
	shutdown(sctx, logger, servers...)
	p.Close()
	if demoSrv != nil {
		shutdown(sctx, logger, demoSrv)
	}
	serving.Wait()
	logger.Info("stopped")
	return code
}

// named is a server with its listener, for logs and shutdown.
type named struct {
	name string
	srv  *http.Server
	ln   net.Listener
}

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
// bodies; on top of that the process needs room for in-flight request and
// response buffers, the runtime, and garbage not yet collected. The
// allowance is an eighth of the cache, and never under 16MiB so small caches
// do not make the GC run constantly. Measured by e2e TestRSSBound (32MiB
// cache, 10x that streamed through in distinct 64KiB bodies): peak RSS
// 53.5MiB with 16MiB (1.7 s for the run), 50MiB with 8MiB (but 3.3 s:
// the GC runs nearly all the time), 69MiB with 32MiB.
func memoryLimit(maxMemory int64) int64 {
	overhead := max(16<<20, maxMemory/8)
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

// printDemo tells a person what to try against the demo.
func printDemo(w io.Writer, proxyAddr, adminAddr, demoAddr net.Addr) {
	cache, admin, up := "http://"+dialable(proxyAddr), "http://"+dialable(adminAddr), "http://"+dialable(demoAddr)
	fmt.Fprintf(w, "dedupcache demo: cache on %s in front of a demo API on %s\n", cache, up)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "  curl -si %s/users/999 | grep -i x-cache\t# MISS, then HIT\n", cache)
	fmt.Fprintf(tw, "  curl -si %s/users/1000 | grep -i x-cache\t# MISS, but its body is shared: see bodies_unique\n", cache)
	fmt.Fprintf(tw, "  curl -s -D- -o /dev/null %s/users/3/avatar | grep -i x-cache\t# most users share one default avatar\n", cache)
	fmt.Fprintf(tw, "  curl -si %s/time | grep -i x-cache\t# no-store: BYPASS\n", cache)
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

// tagHeader maps the config's tag header to proxy.Config's, where "" means
// the default and "-" none.
func tagHeader(name string) string {
	if name == "" {
		return "-"
	}
	return name
}

// reload re-reads the config file on SIGHUP, applies the command-line
// flags on top again, validates, and hands the settings that can change at
// run time to the proxy and the logger: log.level, log.access,
// log.access_sample, admin.token, cache.grace and cache.keep. A change to
// any other field is logged as needing a restart. An invalid file changes
// nothing: the running configuration stays and the error is logged.
func reload(path string, fs *flag.FlagSet, running config.Config, p *proxy.Proxy, level *slog.LevelVar, logger *slog.Logger) {
	next, err := config.Load(path)
	var errs []error
	if err == nil {
		fs.Visit(func(f *flag.Flag) {
			if field, ok := flagFields[f.Name]; ok {
				errs = append(errs, next.Set(field, f.Value.String(), "flag -"+f.Name))
			}
		})
		if running.Upstream != "" && next.Upstream == "" {
			next.Upstream = running.Upstream // -demo's upstream
		}
		errs = append(errs, next.ApplyEnv(os.Getenv), next.Validate())
		err = errors.Join(errs...)
	}
	if err != nil {
		logger.Error("reload failed; keeping the running configuration", "file", path, "err", err)
		return
	}
	for _, field := range config.RestartFields(running, next) {
		logger.Warn("reload: field changed but needs a restart", "field", field)
	}
	_ = level.UnmarshalText([]byte(next.Log.Level))
	p.Reload(proxy.Live{
		Grace:          time.Duration(next.Cache.Grace),
		Keep:           time.Duration(next.Cache.Keep),
		AccessLogEvery: next.AccessLogEvery(),
	})
	logger.Info("reloaded", "file", path, "log_level", next.Log.Level)
}
