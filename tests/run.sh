#!/usr/bin/env bash
# The project's test run (what `make test` calls).
#
# 1. unit, golden and library end-to-end tests (tests/unit_tests.swift, built with -D SANDBOX_LIBRARY);
# 2. CLI tests (tests/cli_tests.sh);
# 3. the built-in suites (base + extended) in both network modes, with a Debian venv and,
#    when pyenv is installed, a pyenv venv whose base interpreter lives under a home dir;
# 4. real Python work (pandas, matplotlib, scikit-learn …) in a Debian and a uv venv;
#    --extra-tests on a build without the companion; --interactive through tmux; breakage
#    tests (a fake bwrap damages the command line, the suites must catch it); sandbox serve
#    (tests/serve_test.py); host death (the host SIGKILLed at random moments: library, CLI,
#    library sessions, sandbox session);
# 5. as root: the AppArmor enforcement tests in a VM with an AppArmor kernel;
# 6. as root: all of the above that isolate, again as an unprivileged user (SANDBOX_TEST_USER,
#    default sandboxci), with a venv whose base interpreter lives in that user's home.
#
# Every part prints a plan line "1..N" first and its own "N passed, N failed[, N skipped]" last;
# a part whose counts do not add up to its plan fails (a test vanished). The last line sums them.
set -u
cd "$(dirname "$0")/.."
VENV=${VENV:-$PWD/tests/build/venv}
BUILD=tests/build
SB=${SB:-$BUILD/sandbox}  # the CLI, as the Makefile builds it
TEST_USER=${SANDBOX_TEST_USER:-sandboxci}
total_passed=0 total_failed=0 total_skipped=0

# part NAME COMMAND...: runs one part, shows its non-passing lines, adds up its summary line.
part() {
  local name=$1; shift
  local log; log=$(mktemp)
  echo "== $name"
  "$@" >"$log" 2>&1
  local rc=$?
  grep -v '^ok ' "$log" | grep -v '^# ' | grep -v '^sandbox: note: the AppArmor layer is OFF' | grep -v -E '^[0-9]+ passed, |^1\.\.[0-9]+$' || true
  local summary; summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  local planned; planned=$(grep -E '^1\.\.[0-9]+$' "$log" | head -n 1 | cut -c4-)
  if [ -z "$summary" ]; then
    echo "not ok - $name printed no summary (exit $rc)"; tail -n 5 "$log"
    total_failed=$((total_failed + 1))
  else
    echo "   $summary"
    local p f s
    p=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$summary")
    f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$summary")
    s=$(grep -oE '[0-9]+ skipped' <<<"$summary" | grep -oE '[0-9]+' || echo 0)
    total_passed=$((total_passed + p)); total_failed=$((total_failed + f)); total_skipped=$((total_skipped + s))
    if [ -z "$planned" ]; then
      echo "not ok - $name printed no plan line"; total_failed=$((total_failed + 1))
    elif [ "$((p + f + s))" != "$planned" ]; then
      echo "not ok - $name planned $planned tests and reported $((p + f + s))"; total_failed=$((total_failed + 1))
    fi
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
      echo "not ok - $name exited $rc"; total_failed=$((total_failed + 1))
    fi
  fi
  rm -f "$log"
}

suites() {  # suites LABEL VENV COMMAND...: base + extended suites, network on and off
  local label=$1 venv=$2
  shift 2
  part "self-tests, network on ($label)" "$@" --no-apparmor --venv "$venv" --extra-tests --enable-network
  part "self-tests, network off ($label)" "$@" --no-apparmor --venv "$venv" --extra-tests --disable-network
}

# The workload venvs, first (the CLI tests use the Debian one for the font-list checks): a Debian
# venv and a uv venv (uv from PyPI, packages byte-compiled as the README says). Built once in tests/build.
WORK_PACKAGES="pandas matplotlib scikit-learn"
WORK_VENV=$BUILD/venv-work UV_VENV=$BUILD/venv-uv
if [ ! -e "$WORK_VENV/.complete" ]; then
  rm -rf "$WORK_VENV" && /usr/bin/python3 -m venv "$WORK_VENV" &&
    "$WORK_VENV/bin/pip" install -q $WORK_PACKAGES uv >/dev/null 2>&1 && touch "$WORK_VENV/.complete"
fi
if [ -e "$WORK_VENV/.complete" ] && [ ! -e "$UV_VENV/.complete" ]; then
  rm -rf "$UV_VENV" && "$WORK_VENV/bin/uv" venv -q -p /usr/bin/python3 "$UV_VENV" &&
    VIRTUAL_ENV=$PWD/$UV_VENV "$WORK_VENV/bin/uv" pip install -q --compile-bytecode $WORK_PACKAGES >/dev/null 2>&1 &&
    touch "$UV_VENV/.complete"
fi
part "unit, golden and library end-to-end tests (root=$([ "$(id -u)" = 0 ] && echo yes || echo no))" \
  env SANDBOX_TEST_VENV="$VENV" "$BUILD/unit_tests"
part "command-line tests" tests/cli_tests.sh "$SB" "$VENV"
suites "Debian venv" "$VENV" "$SB"
if [ "$(id -u)" = 0 ]; then
  part "self-tests, isolated network: its own namespace through pasta (Debian venv)" \
    "$SB" --no-apparmor --venv "$VENV" --extra-tests --isolated-network
  part "isolated network against a test host of our own (ip netns + veth)" tests/isolated_network_test.sh "$SB" "$VENV"
else
  echo "ok - isolated network # SKIP its test host (ip netns, veth) needs root"
  total_skipped=$((total_skipped + 1))
fi
part "breakage tests: the suites catch deliberately broken sandboxes" tests/breakage_test.sh "$SB" "$VENV"
part "sandbox serve: the protocol, a fuzz pass, admission, the socket, SIGTERM" tests/serve_test.py "$SB" "$VENV"
part "host death: the host SIGKILLed at random moments leaves no process of its runs" \
  tests/host_death_test.py "$SB" "$BUILD/unit_tests" "$VENV"
if command -v tmux >/dev/null; then
  part "--interactive through a real terminal (tmux)" tests/interactive_test.sh "$SB" "$VENV"
else
  echo "ok - --interactive through a terminal # SKIP tmux is not installed (.ci/run installs it)"
  total_skipped=$((total_skipped + 1))
fi

PYENV_PYTHON=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/*/bin/python3 2>/dev/null | head -n 1)
if [ -n "$PYENV_PYTHON" ]; then
  [ -x "$BUILD/venv-pyenv/bin/python" ] || "$PYENV_PYTHON" -m venv "$BUILD/venv-pyenv"
  suites "pyenv venv: $PYENV_PYTHON" "$BUILD/venv-pyenv" "$SB"
  part "library end-to-end tests (pyenv venv)" env SANDBOX_TEST_VENV="$BUILD/venv-pyenv" "$BUILD/unit_tests"
else
  echo "ok - pyenv venv suites # SKIP no pyenv interpreter under ${PYENV_ROOT:-$HOME/.pyenv}/versions"
  total_skipped=$((total_skipped + 1))
fi

# Real Python work (pandas, matplotlib, scikit-learn) in both, network on and off.
for kind in Debian uv; do
  venv=$([ "$kind" = uv ] && echo "$UV_VENV" || echo "$WORK_VENV")
  if [ -e "$venv/.complete" ]; then
    part "real Python work ($kind venv: $WORK_PACKAGES)" tests/workloads_test.sh "$SB" "$venv" "$kind venv"
  else
    echo "ok - real Python work in a $kind venv # SKIP could not install $WORK_PACKAGES from PyPI"
    total_skipped=$((total_skipped + 1))
  fi
done

extra_note() {
  echo "1..1"
  out=$("$BUILD/sandbox-base" --no-apparmor --venv "$VENV" --extra-tests 2>&1)
  grep -q "sandbox_extra_tests.swift was not compiled in" <<<"$out" && ! grep -q "TIOCSTI" <<<"$out" &&
    grep -q "TIOCSTI" < <("$SB" --no-apparmor --venv "$VENV" --extra-tests --verbose 2>&1)
  local rc=$?
  [ "$rc" = 0 ] && echo "ok - --extra-tests without the companion says so and runs the base suite only"
  [ "$rc" = 0 ] || echo "not ok - --extra-tests without the companion"
  echo "$([ "$rc" = 0 ] && echo 1 || echo 0) passed, $([ "$rc" = 0 ] && echo 0 || echo 1) failed"
}
part "companion detection" extra_note
if swift build --version >/dev/null 2>&1; then
  part "SwiftPM embedding: the README's examples in a Swift 6 package" tests/swiftpm_test.sh "$VENV"
else
  echo "ok - SwiftPM embedding # SKIP swift build is not in this toolchain"
  total_skipped=$((total_skipped + 1))
fi

# AppArmor enforcement cannot be observed on a kernel without it: one VM with Debian's
# AppArmor kernel runs every enforcement check (tests/apparmor_in_vm.sh).
AA_VM=../shared/tools/aa-vm/run-in-aa-vm.sh
if [ "$(id -u)" != 0 ]; then
  echo "ok - AppArmor enforcement in a VM # SKIP the VM tool needs root"
  total_skipped=$((total_skipped + 1))
elif [ ! -x "$AA_VM" ]; then
  echo "ok - AppArmor enforcement in a VM # SKIP $AA_VM is absent (it lives beside the project, not in it)"
  total_skipped=$((total_skipped + 1))
else
  "$AA_VM" --prepare >/dev/null 2>&1 || true
  part "AppArmor enforcement and the cgroup layer in a VM: Debian 12 (kernel 6.1, AppArmor 3.0, bwrap 0.8)" \
    "$AA_VM" -w "$PWD" -C "$PWD" -e SANDBOX_TEST_USER="$TEST_USER" -e VENV="$VENV" -s tests/apparmor_in_vm.sh
  # Debian 13's own root filesystem (debootstrap, cached once by --prepare): its Python makes the venv.
  if "$AA_VM" --distro trixie --prepare >/dev/null 2>&1; then
    part "AppArmor enforcement and the cgroup layer in a VM: Debian 13 (kernel 6.12, AppArmor 4.1, bwrap 0.12, Python 3.13)" \
      "$AA_VM" --distro trixie -w "$PWD" -C "$PWD" -e SANDBOX_TEST_USER="$TEST_USER" -- \
      sh -c 'python3 -m venv --without-pip /tmp/v && VENV=/tmp/v exec bash tests/apparmor_in_vm.sh'
  else
    echo "not ok - AppArmor on Debian 13: $AA_VM --distro trixie --prepare failed (it needs the Debian mirror)"
    total_failed=$((total_failed + 1))
  fi
fi

if [ "$(id -u)" = 0 ] && ! id "$TEST_USER" >/dev/null 2>&1; then
  # A fresh machine has no such account: make it, and say so (userdel -r removes it again).
  if useradd --create-home --shell /usr/sbin/nologin "$TEST_USER"; then
    echo "# note: created the unprivileged account $TEST_USER for the runs below (remove it with: userdel -r $TEST_USER)"
  fi
fi
if [ "$(id -u)" = 0 ]; then
  if id "$TEST_USER" >/dev/null 2>&1; then
    # Everything the user runs lives in a world-readable stage dir; the venv's base
    # interpreter lives in the user's home, as with pyenv or uv.
    STAGE=$(mktemp -d /var/tmp/sandbox-unprivileged-XXXXXX)
    chmod 755 "$STAGE"
    cp "$SB" "$BUILD/unit_tests" tests/lib.sh tests/cli_tests.sh tests/host_death_test.py tests/deny_namespaces.py \
      tests/workloads_test.sh tests/serve_test.py README.md "$STAGE/"
    cp -r tests/golden "$STAGE/golden"
    /usr/bin/python3 -m venv "$STAGE/venv"
    USER_HOME=$(getent passwd "$TEST_USER" | cut -d: -f6)
    PREFIX="$USER_HOME/.pyenv/versions/3-debian-copy"
    if [ ! -x "$PREFIX/bin/python3" ]; then
      # A relocated base interpreter: its binary under the home dir, its stdlib reached by symlink.
      PYV=$(/usr/bin/python3 -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')
      runuser -u "$TEST_USER" -- mkdir -p "$PREFIX/bin" "$PREFIX/lib"
      cp "/usr/bin/$PYV" "$PREFIX/bin/$PYV" && chown "$TEST_USER" "$PREFIX/bin/$PYV"
      runuser -u "$TEST_USER" -- ln -sf "$PYV" "$PREFIX/bin/python3"
      runuser -u "$TEST_USER" -- ln -sf "/usr/lib/$PYV" "$PREFIX/lib/$PYV"
    fi
    mkdir "$STAGE/venv-home" && chown "$TEST_USER" "$STAGE/venv-home"
    runuser -u "$TEST_USER" -- "$PREFIX/bin/python3" -m venv --without-pip "$STAGE/venv-home"
    chown -R root "$STAGE/venv" && chmod -R a+rX "$STAGE"
    as_user() { (cd /tmp && runuser -u "$TEST_USER" -- env -i PATH=/usr/bin:/bin HOME="$USER_HOME" TMPDIR=/tmp "$@"); }
    part "library end-to-end tests as $TEST_USER" as_user env SANDBOX_TEST_VENV="$STAGE/venv" SANDBOX_GOLDEN_DIR="$STAGE/golden" "$STAGE/unit_tests"
    part "command-line tests as $TEST_USER" as_user "$STAGE/cli_tests.sh" "$STAGE/sandbox" "$STAGE/venv"
    part "sandbox serve as $TEST_USER" as_user "$STAGE/serve_test.py" "$STAGE/sandbox" "$STAGE/venv"
    part "host death as $TEST_USER" as_user "$STAGE/host_death_test.py" "$STAGE/sandbox" "$STAGE/unit_tests" "$STAGE/venv"
    # Sessions' figures and the real work, as the account: the workload venv where it can read it.
    if [ -e "$WORK_VENV/.complete" ] && as_user test -x "$PWD/$WORK_VENV/bin/python"; then
      part "real Python work as $TEST_USER (Debian venv: $WORK_PACKAGES)" \
        as_user "$STAGE/workloads_test.sh" "$STAGE/sandbox" "$PWD/$WORK_VENV" "Debian venv as $TEST_USER"
    else
      echo "ok - real Python work as $TEST_USER # SKIP $PWD/$WORK_VENV is missing or out of $TEST_USER's reach"
      total_skipped=$((total_skipped + 1))
    fi
    suites "as $TEST_USER, Debian venv" "$STAGE/venv" as_user "$STAGE/sandbox"
    suites "as $TEST_USER, base interpreter in $PREFIX" "$STAGE/venv-home" as_user "$STAGE/sandbox"
    rm -rf "$STAGE"
  else
    echo "not ok - unprivileged runs: user $TEST_USER does not exist and useradd could not create it"
    total_failed=$((total_failed + 1))
  fi
else
  echo "ok - unprivileged runs # SKIP already running as uid $(id -u)"
  total_skipped=$((total_skipped + 1))
fi

echo "$total_passed passed, $total_failed failed, $total_skipped skipped"
[ "$total_failed" = 0 ]
