#!/bin/sh
# Splits the debug information and the symbol table off a binary:
#
#   strip-debug.sh BINARY STRIPPED DEBUG_FILE
#
# DEBUG_FILE gets the debug sections (compressed) and the symbol table; STRIPPED is the binary
# without either, with a .gnu_debuglink naming DEBUG_FILE and the build id the linker wrote, so
# gdb, perf and addr2line find the symbols when the file is beside the binary or under
# /usr/lib/debug/.build-id/. Panic messages keep their file and line (they are in the
# program's data, not in its debug information). The Dockerfile runs this script, and so does
# scripts/release-build.sh, which measures the result.
set -eu
bin=$1 stripped=$2 debug=$3
objcopy --only-keep-debug --compress-debug-sections=zlib "$bin" "$debug"
chmod 0644 "$debug"
objcopy --strip-all --add-gnu-debuglink="$debug" "$bin" "$stripped"
