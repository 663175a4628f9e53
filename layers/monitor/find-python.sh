#!/bin/sh
# Usage: find-python.sh 3.13
# Prints the path of a working CPython interpreter of that version (a final release with the GIL,
# so its bytecode is the one the Lambda runtime loads), or prints nothing and exits 1.
# Looks at pythonX.Y on PATH, then at pyenv's and uv's installs. A pyenv shim on PATH that has
# no such version selected does not run, so each candidate is run before it is believed.
set -u
want="${1:?usage: find-python.sh MAJOR.MINOR}"

runs_wanted_version() {
    [ -n "$1" ] && [ -x "$1" ] || return 1
    "$1" - "$want" >/dev/null 2>&1 <<'EOF'
import sys, sysconfig
version = "%d.%d" % sys.version_info[:2]
final = sys.version_info.releaselevel == "final"
sys.exit(0 if version == sys.argv[1] and final and not sysconfig.get_config_var("Py_GIL_DISABLED") else 1)
EOF
}

candidates() {
    command -v "python$want" 2>/dev/null
    if command -v pyenv >/dev/null 2>&1; then
        root="$(pyenv root 2>/dev/null)"
        for dir in "$root/versions/$want".*; do
            echo "$dir/bin/python$want"
        done
    fi
    if command -v uv >/dev/null 2>&1; then
        uv python find "$want" 2>/dev/null
    fi
}

# One candidate a line, so a path with spaces stays whole.
IFS='
'
for candidate in $(candidates); do
    if runs_wanted_version "$candidate"; then
        echo "$candidate"
        exit 0
    fi
done
exit 1
