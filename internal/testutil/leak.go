package testutil

import "go.uber.org/goleak"

// LeakOptions are the goroutines a package's goleak check ignores: fasthttp
// starts two that outlive every server and client by design. Its Date
// ticker runs once per process; a HostClient's idle-connection cleaner
// sleeps up to the idle timeout before it sees the pool is empty (Close has
// closed every connection by then) and holds nothing.
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
	}
}
