#!/usr/bin/env bash
# Proves the self-test suites have teeth: each case puts a fake `bwrap` first on PATH that
# damages the command line the real binary builds, then checks that the suite fails and
# names the property that broke. Run as root (some breakages only show for root).
# Usage: tests/breakage_test.sh SANDBOX_BINARY VENV
# Ends with the line "N passed, N failed, N skipped".
set -u
SB=$(realpath "$1")
VENV=$(realpath "$2")
. "$(dirname "$0")/lib.sh"
plan 15
REAL_BWRAP=$(command -v bwrap)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sandbox-breakage-XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# fake_bwrap DIR TRANSFORM: writes DIR/bwrap, which applies TRANSFORM and runs the real one.
# TRANSFORM is bash that edits the array `args` (bwrap's arguments) and may add to `environment`
# (the launcher's environment, empty as the real sandbox leaves it) before exec.
fake_bwrap() {
  mkdir -p "$1"
  cat > "$1/bwrap" <<WRAPPER
#!/bin/bash
args=("\$@")
environment=()
if [ "\${args[0]}" != "--version" ]; then
$2
fi
exec env -i "\${environment[@]}" $REAL_BWRAP "\${args[@]}"
WRAPPER
  chmod +x "$1/bwrap"
}
case_dir() { echo "$WORK/$(echo "$1" | tr -c 'a-z0-9' '-')"; }

# breakage NAME SUITE_FLAGS EXPECTED_FAILING_TEST TRANSFORM: the suite must fail (exit 1) and
# name the test that caught it.
breakage() {
  local name=$1 flags=$2 expected=$3 dir
  dir=$(case_dir "$name")
  fake_bwrap "$dir" "$4"
  out=$(cd /tmp && PATH="$dir:$PATH" "$SB" --no-apparmor --venv "$VENV" --extra-tests $flags 2>&1); rc=$?
  on_failure=show_suite check "breakage caught: $name (fails: $expected)" \
    bash -c 'test "$1" = 1 && grep -q "^not ok .* - $2" <<<"$3"' _ "$rc" "$expected" "$out"
}
show_suite() { echo "#   exit $rc"; grep -E "^(not ok|[0-9]+ passed)" <<<"$out" | sed 's/^/#   /'; }
# refused NAME EXPECTED_MESSAGE TRANSFORM: the suite must stop with exit 125 and the message.
refused() {
  local name=$1 expected=$2 dir
  dir=$(case_dir "$name")
  fake_bwrap "$dir" "$3"
  out=$(cd /tmp && PATH="$dir:$PATH" "$SB" --no-apparmor --venv "$VENV" 2>&1); rc=$?
  on_failure=show_tail check "breakage refused: $name ($expected)" \
    bash -c 'test "$1" = 125 && grep -q "$2" <<<"$3"' _ "$rc" "$expected" "$out"
}
show_tail() { echo "#   exit $rc"; tail -n 3 <<<"$out" | sed 's/^/#   /'; }
replace_command() {  # bash that runs the interpreter directly instead of the gate (the last 5 arguments)
  echo 'n=${#args[@]}; args=("${args[@]:0:$((n - 5))}" "${args[$((n - 2))]}" "${args[$((n - 1))]}")'
}
drop() {  # bash that removes every occurrence of flag $1 (and its $2 following values)
  echo "new=(); i=0; while [ \$i -lt \${#args[@]} ]; do if [ \"\${args[\$i]}\" = '$1' ]; then i=\$((i + 1 + ${2:-0})); continue; fi; new+=(\"\${args[\$i]}\"); i=\$((i + 1)); done; args=(\"\${new[@]}\")"
}
replace_pair() {  # bash that replaces the pair "$1 $2" with "$3 $4 ..." (nothing when only two given)
  local old1=$1 old2=$2; shift 2
  echo "new=(); i=0; while [ \$i -lt \${#args[@]} ]; do if [ \"\${args[\$i]}\" = '$old1' ] && [ \"\${args[\$((i + 1))]}\" = '$old2' ]; then new+=($*); i=\$((i + 2)); continue; fi; new+=(\"\${args[\$i]}\"); i=\$((i + 1)); done; args=(\"\${new[@]}\")"
}
insert_before_chdir() {  # bash that adds the given arguments as the last mounts
  echo "new=(); for a in \"\${args[@]}\"; do if [ \"\$a\" = --chdir ]; then new+=($*); fi; new+=(\"\$a\"); done; args=(\"\${new[@]}\")"
}
insert_first() {  # bash that puts the given arguments first
  echo "args=($* \"\${args[@]}\")"
}

breakage "the host's /etc bound whole" "" "/etc holds only the documented files" "$(insert_first --ro-bind /etc /etc)"
breakage "no --clearenv, launcher environment holds a secret" "" "the environment holds only the allowlisted variables" \
  "environment+=(HOST_SECRET=leaked); $(drop --clearenv)"
breakage "the host's /tmp bound instead of a private tmpfs" "" "/tmp is private" "$(insert_before_chdir --bind /tmp /tmp)"
breakage "no network namespace with --disable-network" "--disable-network" "network off: only the loopback interface exists" "$(drop --unshare-net)"
breakage "/proc left writable" "" "/proc/sys and /proc/sysrq-trigger are not writable" "$(replace_pair --remount-ro /proc)"
breakage "no uts namespace" "" "the hostname is the sandbox's own" "$(drop --unshare-uts) ; $(drop --hostname 1)"
breakage "no --disable-userns (seccomp relaxed, so only bwrap's option stood in the way)" "--no-seccomp" "a nested user namespace cannot be created" "$(drop --disable-userns) ; $(drop --assert-userns-disabled)"
if [ "$(id -u)" = 0 ]; then
  breakage "capabilities kept (root caller)" "" "the payload holds no capabilities" "$(drop --cap-drop 1)"
else
  skip "breakage: capabilities kept" "bwrap drops capabilities for unprivileged callers anyway"
fi
if [ "$(id -u)" = 0 ]; then
  # A base interpreter in /opt with a canary beside it; binding its whole prefix must be caught.
  OPT_PREFIX=$(mktemp -d /opt/sandbox-breakage-XXXXXX)
  PYV=$(/usr/bin/python3 -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')
  mkdir -p "$OPT_PREFIX/bin" "$OPT_PREFIX/lib" "$OPT_PREFIX/.ssh" && echo canary > "$OPT_PREFIX/.ssh/id_ed25519"
  cp "/usr/bin/$PYV" "$OPT_PREFIX/bin/" && ln -s "/usr/lib/$PYV" "$OPT_PREFIX/lib/$PYV"
  "$OPT_PREFIX/bin/$PYV" -m venv --without-pip "$OPT_PREFIX-venv"
  saved_venv=$VENV; VENV=$OPT_PREFIX-venv
  breakage "the base interpreter's whole prefix bound (a canary .ssh beside it)" "" "host home directories and /root are invisible" \
    "$(insert_before_chdir --ro-bind "$OPT_PREFIX" "$OPT_PREFIX")"
  VENV=$saved_venv; rm -rf "$OPT_PREFIX" "$OPT_PREFIX-venv"
else
  skip "breakage: the base interpreter's whole prefix bound" "making a prefix in /opt needs root"
fi
breakage "an inherited descriptor" "" "no descriptors beyond 0-2 are inherited" "exec 20</dev/null"
breakage "the seccomp filter replaced by a permissive one" "" "seccomp: every denied system call fails with its errno" \
  'for i in "${!args[@]}"; do if [ "${args[$i]}" = --seccomp ]; then exec 20< <(printf "\x06\x00\x00\x00\x00\x00\xff\x7f"); args[$((i + 1))]=20; fi; done'
# Breakages of the start-up handshake stop every run before the payload starts (exit 125): the
# host never says "go" to a sandbox it cannot verify.
refused "the gate removed (the payload would start at once, without limits)" "before the payload started" "$(replace_command)"
refused "the seccomp filter dropped (pid 1 never shows it armed)" "did not arm its parent-death signal" "$(drop --seccomp 1)"
refused "bwrap's status report dropped (pid 1 unknown)" "did not report its pid 1" "$(drop --json-status-fd 1)"
refused "no pid namespace (the reported pid is no namespace's init)" "not the init of a new pid namespace" "$(drop --unshare-pid)"

finish
