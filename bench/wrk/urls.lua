-- wrk script for bench/run.sh: GET /obj/I with I uniform in [0, N).
--   wrk ... -s bench/wrk/urls.lua URL -- N SEED
-- Every request line is rendered once in init(); request() only draws an
-- index. done() prints one line starting with "RESULT" that run.sh parses.

local lines = {}
local count = 1000

function init(args)
  count = tonumber(args[1]) or 1000
  math.randomseed(tonumber(args[2]) or 1)
  for i = 1, count do
    lines[i] = wrk.format("GET", "/obj/" .. (i - 1))
  end
end

function request()
  return lines[math.random(count)]
end

function done(s, lat, _)
  local e = s.errors
  io.write(string.format("RESULT requests=%d duration_us=%d bytes=%d errors=%d err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d mean_us=%.1f\n",
    s.requests, s.duration, s.bytes, e.connect + e.read + e.write + e.status + e.timeout,
    e.connect, e.read, e.write, e.status, e.timeout,
    lat:percentile(50), lat:percentile(90), lat:percentile(99), lat:percentile(99.9), lat.max, lat.mean))
end
