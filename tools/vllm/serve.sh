#!/usr/bin/env bash
# tools/vllm/serve.sh: starts, waits for, stalls and stops a vLLM CPU server on 127.0.0.1 serving
# the converted LLM with the flags hlm's vLLM backend needs (docs/vllm.md says what each is for).
# One server per port; it runs detached in its own process group, so stop ends all of it.
#
#   tools/vllm/serve.sh start PORT      start in the background (refuses a port already in use)
#   tools/vllm/serve.sh wait PORT [S]   poll /health up to S seconds (180); on failure print the
#                                       log's tail and fail
#   tools/vllm/serve.sh stop PORT       SIGTERM the process group, SIGKILL after 30 s; waits
#   tools/vllm/serve.sh kill PORT       SIGKILL the process group at once (a crash, for tests)
#   tools/vllm/serve.sh stall PORT      SIGSTOP the process group (a hung replica, for tests)
#   tools/vllm/serve.sh resume PORT     SIGCONT it
#   tools/vllm/serve.sh status PORT     print pid and health; exit 0 only if healthy
#
# Files: $HLM_VLLM_RUN_DIR (/tmp/hlm-vllm)/PORT.log and PORT.pid. Environment:
# HLM_VLLM_VENV (tools/vllm/setup.sh's venv), HLM_VLLM_MODEL (the folder tools/vllm/
# convert_gguf.py writes), HLM_VLLM_NAME (served model name, smollm2-135m), HLM_VLLM_HOST
# (127.0.0.1), HLM_VLLM_BLOCK_SIZE (prefix-cache block in tokens, 32: vLLM's CPU default of 128
# makes a cached request recompute up to 127 tokens; its CPU attention needs a multiple of 32),
# HLM_VLLM_ARGS (extra flags, split on spaces), VLLM_CPU_KVCACHE_SPACE (GB of KV cache, 2).
# Each server holds about 7.5 GB of memory on this model.
set -euo pipefail

cache=${XDG_CACHE_HOME:-$HOME/.cache}/hlm
venv=${HLM_VLLM_VENV:-$cache/vllm-venv}
model=${HLM_VLLM_MODEL:-$cache/vllm-model/smollm2-135m}
name=${HLM_VLLM_NAME:-smollm2-135m}
host=${HLM_VLLM_HOST:-127.0.0.1}
run_dir=${HLM_VLLM_RUN_DIR:-/tmp/hlm-vllm}

die() { echo "vllm-serve: $*" >&2; exit 1; }
usage() { die "usage: $0 start|wait|stop|kill|stall|resume|status PORT [SECONDS]"; }

(($# >= 2)) || usage
cmd=$1 port=$2
if ! [[ "$port" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
  die "'$port' is not a port number"
fi
log="$run_dir/$port.log"
pidfile="$run_dir/$port.pid"
url="http://$host:$port"

# The process group of the server on PORT, if one started by this script is alive.
group() {
  [[ -f "$pidfile" ]] || return 1
  local pid
  pid=$(cat "$pidfile")
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 -- "-$pid" 2>/dev/null && echo "$pid"
}
port_busy() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }
healthy() { curl -sf -m 5 -o /dev/null "$url/health"; }
log_tail() {
  echo "--- last 40 lines of $log" >&2
  tail -n 40 "$log" >&2 || true
  echo "---" >&2
}

# Signals the whole group and waits up to $2 seconds for it to be gone.
signal_and_wait() {
  local sig=$1 seconds=$2 pgid=$3
  kill "-$sig" -- "-$pgid" 2>/dev/null || true
  local i
  for ((i = 0; i < seconds * 10; i++)); do
    kill -0 -- "-$pgid" 2>/dev/null || return 0
    sleep 0.1
  done
  return 1
}

case "$cmd" in
  start)
    if pgid=$(group); then
      die "a server started by this script already runs on port $port (process group $pgid):" \
        "'$0 stop $port' first"
    fi
    port_busy && die "port $port on $host is already in use by another process: pick another port" \
      "(HLM_VLLM_PORT) or stop what listens there"
    [[ -x "$venv/bin/python" ]] || die "no venv at $venv: run tools/vllm/setup.sh"
    [[ -f "$model/config.json" ]] ||
      die "no converted model at $model: run $venv/bin/python tools/vllm/convert_gguf.py"
    avail_gb=$(awk '/^MemAvailable:/ {print int($2 / 1048576)}' /proc/meminfo || echo 99)
    if ((avail_gb < 8)); then
      echo "vllm-serve: warning: ${avail_gb} GB of memory available; a server takes ~7.5 GB" >&2
    fi
    mkdir -p "$run_dir"
    # setsid: the server leads its own process group (its EngineCore and Worker children join
    # it), so stop/kill reach every process and nothing is tied to the caller's terminal.
    # shellcheck disable=SC2086 # HLM_VLLM_ARGS is a list of words by design
    VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-2} setsid \
      "$venv/bin/python" -m vllm.entrypoints.openai.api_server \
      --model "$model" --served-model-name "$name" \
      --max-logprobs -1 --dtype float32 --enforce-eager --enable-prefix-caching \
      --block-size "${HLM_VLLM_BLOCK_SIZE:-32}" --max-model-len 2048 \
      --host "$host" --port "$port" ${HLM_VLLM_ARGS:-} \
      </dev/null >"$log" 2>&1 &
    pid=$!
    echo "$pid" >"$pidfile"
    # Return only once setsid has made the group (stop, kill and wait look for it).
    for ((i = 0; i < 100; i++)); do
      kill -0 -- "-$pid" 2>/dev/null && break
      kill -0 "$pid" 2>/dev/null || { log_tail; die "the server on port $port exited at once"; }
      sleep 0.05
    done
    echo "vllm-serve: started on $url (pid $pid, log $log); '$0 wait $port' waits for /health"
    ;;
  wait)
    seconds=${3:-180}
    t0=$SECONDS
    while ((SECONDS - t0 < seconds)); do
      if healthy; then
        echo "vllm-serve: $url healthy after $((SECONDS - t0))s"
        exit 0
      fi
      if [[ -f "$pidfile" ]] && ! group >/dev/null; then
        log_tail
        die "the server on port $port exited before it became healthy (log above)"
      fi
      sleep 1
    done
    log_tail
    die "$url/health did not answer within ${seconds}s (log above)"
    ;;
  stop | kill)
    if ! pgid=$(group); then
      rm -f "$pidfile"
      echo "vllm-serve: no server started by this script runs on port $port"
      exit 0
    fi
    kill -CONT -- "-$pgid" 2>/dev/null || true # a stalled server cannot act on SIGTERM
    if [[ "$cmd" == kill ]]; then
      signal_and_wait KILL 10 "$pgid" || die "process group $pgid survived SIGKILL"
    elif ! signal_and_wait TERM 30 "$pgid"; then
      echo "vllm-serve: still running 30s after SIGTERM: SIGKILL" >&2
      signal_and_wait KILL 10 "$pgid" || die "process group $pgid survived SIGKILL"
    fi
    rm -f "$pidfile"
    [[ "$cmd" == kill ]] && done_="killed" || done_="stopped"
    echo "vllm-serve: $done_ the server on port $port (process group $pgid)"
    ;;
  stall | resume)
    pgid=$(group) || die "no server started by this script runs on port $port"
    if [[ "$cmd" == stall ]]; then
      kill -STOP -- "-$pgid"
      echo "vllm-serve: stalled the server on port $port (SIGSTOP to $pgid)"
    else
      kill -CONT -- "-$pgid"
      echo "vllm-serve: resumed the server on port $port (SIGCONT to $pgid)"
    fi
    ;;
  status)
    if pgid=$(group); then
      if healthy; then echo "vllm-serve: port $port: process group $pgid, healthy"; exit 0; fi
      echo "vllm-serve: port $port: process group $pgid, not healthy (yet)"
      exit 1
    fi
    echo "vllm-serve: port $port: no server started by this script"
    exit 1
    ;;
  *) usage ;;
esac
