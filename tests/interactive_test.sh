#!/usr/bin/env bash
# Drives `sandbox --interactive` through a real terminal (tmux) and checks it behaves like one.
# Usage: tests/interactive_test.sh SANDBOX_BINARY VENV
# Ends with the line "N passed, N failed, N skipped".
set -u
SB=$(realpath "$1")
VENV=$(realpath "$2")
. "$(dirname "$0")/lib.sh"
plan 13
SESSION=sandbox-interactive-$$
show_screen() { screen | sed 's/^/#   /' | tail -n 8; }
on_failure=show_screen
screen() { tmux capture-pane -p -t "$SESSION" -S -200 2>/dev/null | sed '/^$/d'; }
shows() { screen | grep -qF -- "$1"; }
# wait_for TEXT: polls the screen for up to 10 s (the REPL starts in ~50 ms; CI machines vary).
wait_for() { for _ in $(seq 100); do shows "$1" && return 0; sleep 0.1; done; return 1; }
type_line() { tmux send-keys -t "$SESSION" -l -- "$1"; tmux send-keys -t "$SESSION" Enter; }
trap 'tmux kill-session -t "$SESSION" 2>/dev/null' EXIT

out=$("$SB" --no-apparmor --venv "$VENV" --interactive </dev/null 2>&1); rc=$?
check "without a terminal, --interactive exits 2 and says why" test "$rc" = 2 -a -n "$(grep 'needs a terminal' <<<"$out")"

tmux new-session -d -s "$SESSION" -x 160 -y 50 "bash --norc --noprofile"
tmux send-keys -t "$SESSION" "cd /tmp && PS1='host\$ ' && clear" Enter
type_line "$SB --no-apparmor --venv $VENV --interactive; echo EXITED-\$?"
check "the REPL starts with a prompt" wait_for ">>>"
type_line "print(6 * 7)"
check "a line typed is evaluated" wait_for "42"
type_line "import os, sys; print('PREFIX', sys.prefix, 'CTTY', os.tcgetpgrp(0) == os.getpgrp())"
check "the REPL runs the venv's interpreter with the pty as its controlling terminal" wait_for "PREFIX $(realpath "$VENV") CTTY True"
type_line "import time; time.sleep(60)"
sleep 0.5
tmux send-keys -t "$SESSION" C-c
check "Ctrl-C interrupts the payload" wait_for "KeyboardInterrupt"
type_line "print('still', 'alive')"
check "... and neither the REPL nor the host process ends" wait_for "still alive"
tmux send-keys -t "$SESSION" Up Enter
sleep 0.5
check "line editing: Up recalls the last line" test "$(screen | grep -c '^still alive$')" -ge 2
type_line "open('/mnt/kept.txt', 'w').write('x'); print('MNT', os.listdir('/mnt'))"
check "/mnt is writable during the session" wait_for "MNT ['kept.txt']"
tmux send-keys -t "$SESSION" C-d
check "Ctrl-D leaves with status 0" wait_for "EXITED-0"
type_line "stty -a | tr ' ' '\n' | grep -x -e icanon -e echo | tr '\n' ' '; echo"
check "the host terminal is restored (icanon, echo)" wait_for "icanon echo"
type_line "$SB --no-apparmor --venv $VENV --interactive; echo SECOND-\$?"
wait_for ">>>" >/dev/null
type_line "print('AGAIN', os.listdir('/mnt')) if 'os' in dir() else print('AGAIN', __import__('os').listdir('/mnt'))"
check "/mnt was ephemeral: a new session starts empty" wait_for "AGAIN []"
# What would act on the user's terminal (a title through OSC 2, tmux honours it) never reaches it.
tmux send-keys -t "$SESSION" -l -- "print('\\x1b]2;PWNED-TITLE\\x07\\x1b]52;c;cHduZWQ=\\x07\\x1b[21t' + 'SENT-' + 'BYTES')"
tmux send-keys -t "$SESSION" Enter
wait_for "SENT-BYTES" >/dev/null
check "the payload's OSC title, OSC 52 clipboard and CSI 21t report request do not reach the terminal" \
  test "$(tmux display -p -t "$SESSION" '#{pane_title}')" != PWNED-TITLE
type_line "exit(3)"
check "exit(3) leaves with status 3" wait_for "SECOND-3"

finish
