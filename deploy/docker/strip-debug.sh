#!/bin/sh
# Splits the debug information off a binary:
#
#   strip-debug.sh BINARY STRIPPED DEBUG_FILE
#
# DEBUG_FILE gets the debug sections (compressed) and STRIPPED the binary without them, with a
# .gnu_debuglink naming DEBUG_FILE (and the build id the linker wrote), so gdb, perf and
# addr2line find the symbols when the file is beside the binary or under
# /usr/lib/debug/.build-id/. The symbol table stays in the binary: panic backtraces keep
# their function names. The Dockerfile runs this script, and so does scripts/release-build.sh,
# which measures the result.
set -eu
bin=$1 stripped=$2 debug=$3
objcopy --only-keep-debug --compress-debug-sections=zlib "$bin" "$debug"
chmod 0644 "$debug"
objcopy --strip-debug --add-gnu-debuglink="$debug" "$bin" "$stripped"
