# tests/lib.sh — the one assert library of the shell tests (sourced, after bubblewrap's
# tests/libtest-core.sh). Output is TAP-like: a plan line "1..N" first, then one line per check,
# then the summary "N passed, N failed, N skipped" last. tests/run.sh fails a part whose
# counts do not add up to its plan, so a check that silently vanishes is caught.
#
#   plan N              how many checks (check + skip) the script makes, whatever the host
#   check NAME CMD...   passes when CMD succeeds; on failure calls the function in $on_failure, if set
#   skip NAME WHY       a check that cannot run here, and why
#   finish              the summary line; its status is the script's (use: finish; exit)
lib_passed=0 lib_failed=0 lib_skipped=0 lib_planned=""

plan() {
  lib_planned=$1
  echo "1..$1"
}

lib_number() { echo $((lib_passed + lib_failed + lib_skipped)); }

check() {
  local name=$1
  shift
  if "$@"; then
    lib_passed=$((lib_passed + 1))
    echo "ok $(lib_number) - $name"
  else
    lib_failed=$((lib_failed + 1))
    echo "not ok $(lib_number) - $name"
    if [ -n "${on_failure:-}" ]; then "$on_failure"; fi
  fi
  return 0
}

skip() {
  lib_skipped=$((lib_skipped + 1))
  echo "ok $(lib_number) - $1 # SKIP $2"
}

finish() {
  local made
  made=$(lib_number)
  if [ -n "$lib_planned" ] && [ "$made" != "$lib_planned" ]; then
    lib_failed=$((lib_failed + 1))
    echo "not ok - planned $lib_planned checks, made $made"
  fi
  echo "$lib_passed passed, $lib_failed failed, $lib_skipped skipped"
  [ "$lib_failed" = 0 ]
}

# fork_probe MAX: Python that forks up to MAX children (each sleeps 3 s, then exits) and prints
# how many forks succeeded: a fork bomb capped by the test itself, for the process-limit tests.
fork_probe() {
  printf '%s\n' "import os, time" "made = 0" "for _ in range($1):" "    try:" "        pid = os.fork()" \
    "    except OSError:" "        break" "    if pid == 0:" "        time.sleep(3); os._exit(0)" "    made += 1" "print(made)"
}
