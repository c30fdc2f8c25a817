# lib.sh - shell helpers the bench scripts share; source it (". bench/lib.sh").
# Messages name the script that sourced it.

# stop PID: TERM, up to 10 s to exit, then KILL.
stop() {
  local p=$1 i
  kill -0 "$p" 2> /dev/null || return 0
  kill -TERM "$p" 2> /dev/null || true
  for i in $(seq 100); do kill -0 "$p" 2> /dev/null || { wait "$p" 2> /dev/null || true; return 0; }; sleep 0.1; done
  echo "${0##*/}: PID $p still up 10 s after TERM, KILL" >&2
  kill -KILL "$p" 2> /dev/null || true
}

# await_port PORT: until 127.0.0.1:PORT accepts a TCP connection (10 s).
await_port() {
  local i
  for i in $(seq 200); do
    (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null && return 0
    sleep 0.05
  done
  echo "${0##*/}: nothing listens on 127.0.0.1:$1" >&2
  return 1
}
