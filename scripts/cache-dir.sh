# Sourced by the scripts: sets $cache, the directory outside the clone that holds installed
# tools, the Python venv and build directories (default /var/cache/logyard, or
# ~/.cache/logyard when that is not writable; LOGYARD_CACHE overrides).
cache=${LOGYARD_CACHE:-/var/cache/logyard}
if ! mkdir -p "$cache" 2>/dev/null || ! [ -w "$cache" ]; then
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/logyard"
  mkdir -p "$cache"
fi
