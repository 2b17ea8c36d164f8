// Warm pools, end to end (built into tests/build/unit_tests): single use, isolation between
// payloads, preloads that are the venv's and ran inside the sandbox, the cold fallback, inputs,
// the run's semantics against a cold run's, and closing mid-run.
//
// Every target is a canary these tests create; every loop and bomb is bounded by the test.

import Glibc

/// One pool run; nil (and a diagnostic line) when it throws.
func poolRun(
  _ pool: SandboxPool, _ code: String, timeout: Duration? = nil, stdin: [UInt8] = [],
  environment: [String: String] = [:], arguments: [String] = [], files: [String: [UInt8]] = [:]
) async -> SandboxPoolRun? {
  do throws(SandboxError) {
    return try await pool.run(
      .code(code), timeout: timeout, stdin: stdin, environment: environment, arguments: arguments, files: files)
  } catch {
    print("# pool run failed: \(error.description)")
    return nil
  }
}

/// The error a pool call throws, as text ("" when it did not throw).
func poolError(_ body: () async throws(SandboxError) -> Void) async -> String {
  do throws(SandboxError) {
    try await body()
    return ""
  } catch {
    return error.description
  }
}

/// Waits (at most 10 s) until every slot of `pool` is ready.
func poolFull(_ pool: SandboxPool) async {
  for _ in 0..<1000 where pool.readyCount < pool.options.size { try? await Task.sleep(for: .milliseconds(10)) }
}

func makePool(_ sandbox: Sandbox, _ options: SandboxPool.Options) async -> SandboxPool? {
  do throws(SandboxError) {
    let pool = try SandboxPool(sandbox: sandbox, options: options)
    try await pool.waitUntilReady()
    return pool
  } catch {
    print("# pool failed: \(error.description)")
    return nil
  }
}

/// How many descriptors this process holds.
func openDescriptorCount() -> Int {
  guard let directory = opendir("/proc/self/fd") else { return -1 }
  defer { closedir(directory) }
  var count = 0
  while readdir(directory) != nil { count += 1 }
  return count
}

func testPools(_ t: inout Tally, venv: String, temp: String) async {
  let descriptorsBefore = openDescriptorCount()
  let probeDirectory = "\(temp)/sandbox-pool-probe-\(getpid())"
  mkdir(probeDirectory, 0o755)
  defer { shell("rm -rf '\(probeDirectory)'") }
  // A module of our own, imported as a preload: it records where it ran (inside the sandbox, under
  // its seccomp filter) and when (before the payload's code).
  let probe = """
    import os, socket, time
    hostname = socket.gethostname()
    seccomp = [l.split()[1] for l in open('/proc/self/status') if l.startswith('Seccomp:')][0]
    loaded = time.monotonic()
    """
  _ = probe.withCString { text in
    let file = fopen("\(probeDirectory)/sandbox_pool_probe.py", "w")
    defer { fclose(file) }
    return fputs(text, file)
  }
  var config = SandboxConfig(venvPath: venv, appArmor: .disabled)
  config.inputDirectory = probeDirectory  // the probe is found at /input
  let made: Sandbox?
  do throws(SandboxError) { made = try Sandbox(config: config) } catch {
    print("# sandbox failed: \(error.description)")
    made = nil
  }
  guard
    let sandbox = made,
    let pool = await makePool(
      sandbox,
      SandboxPool.Options(
        size: 2, preload: ["json", "sandbox_pool_probe"], environment: ["PYTHONPATH": "/input", "SANDBOX_POOL_TAG": "poolslot\(getpid())"]))
  else {
    t.expect(false, "pool: opens for \(venv)")
    return
  }

  await poolFull(pool)
  // 1. A warm run: the payload's output, argv, stdin, environment and __file__ as a cold run has them.
  let basic = await poolRun(
    pool, "import os, sys\nprint(sys.argv, __file__, __name__, os.environ['GREETING'], sys.stdin.read())",
    stdin: Array("from stdin".utf8), environment: ["GREETING": "hi"], arguments: ["one", "two words"])
  t.expect(
    basic?.warm == true && basic?.result.returnCode == 0
      && basic?.result.stdoutText
        == "['/run/sandbox/main.py', 'one', 'two words'] /run/sandbox/main.py __main__ hi from stdin\n",
    "pool: a warm run gets its argv, stdin, environment and __file__ as a cold run does",
    "\(basic?.warm ?? false) \(basic?.result.stdoutText ?? "") \(basic?.result.stderrText ?? "")")

  // 2. Preloads: in sys.modules before the payload's code, the venv's own, imported inside the
  //    sandbox under its filter, before the run was dispatched.
  let hostJSON = shellOutput("'\(venv)/bin/python' -c 'import json; print(json.__file__)'").trimmingWhitespace
  await poolFull(pool)
  let preloaded = await poolRun(
    pool,
    "import sys, time\nseen = 'json' in sys.modules and 'sandbox_pool_probe' in sys.modules\nimport json, sandbox_pool_probe as p\nprint(seen, json.__file__, p.hostname, p.seccomp, time.monotonic() > p.loaded)"
  )
  t.expect(
    preloaded?.warm == true && preloaded?.result.stdoutText == "True \(hostJSON) sandbox 2 True\n",
    "pool: preloaded modules are in sys.modules, the venv's own, imported inside the sandbox under its seccomp filter",
    "\(preloaded?.result.stdoutText ?? "") vs \(hostJSON) \(preloaded?.result.stderrText ?? "")")

  // 3. Never reused: each payload looks for what the earlier ones left in /tmp, in builtins and
  //    in the environment, then leaves its own.
  var reused: [String] = []
  var warmCount = 0
  for index in 0..<12 {
    let run = await poolRun(
      pool, """
        import builtins, os
        left = [os.path.exists('/tmp/used'), hasattr(builtins, 'sandbox_used'), 'SANDBOX_USED' in os.environ]
        open('/tmp/used', 'w').write('x'); builtins.sandbox_used = 1; os.environ['SANDBOX_USED'] = '1'
        print(left)
        """)
    if run?.result.stdoutText != "[False, False, False]\n" { reused.append("\(index): \(run?.result.stdoutText ?? "nil")") }
    if run?.warm == true { warmCount += 1 }
    if index % 2 == 1 { await poolFull(pool) }  // the next two are warm
  }
  t.expect(reused.isEmpty && warmCount >= 10, "pool: a slot is never handed out twice (12 runs: nothing left by an earlier payload; \(warmCount) warm)", "\(reused)")

  // 4. Two payloads see nothing of each other: a daemon, a /tmp file, the environment.
  let tag = "pooldaemon\(getpid())"  // the main pool's slots carry "poolslot\(getpid())"
  let first = await poolRun(
    pool, """
      import os
      os.environ['TAG'] = '\(tag)'
      open('/tmp/first', 'w').write('1')
      if os.fork() == 0:
          os.setsid()
          os.execvpe('sleep', ['sleep', '60'], dict(os.environ))
      print('forked')
      """)
  await poolFull(pool)
  let second = await poolRun(
    pool, "import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()), os.path.exists('/tmp/first'), 'TAG' in os.environ)")
  t.expect(
    first?.result.stdoutText == "forked\n" && second?.warm == true && second?.result.stdoutText == "[1, 2] False False\n"
      && !taggedProcessesRemain(tag, seconds: 2),
    "pool: a payload's daemon, /tmp and environment are gone before the next payload, which sees only its own processes",
    "\(second?.result.stdoutText ?? "") \(second?.result.stderrText ?? "")")

  // 5. The end of a run as Python's: threads joined, atexit, an unclosed file flushed, exit statuses, tracebacks.
  let ending = await poolRun(
    pool, """
      import atexit, threading, time
      def late():
          time.sleep(0.2)
          print('thread done', flush=True)
      threading.Thread(target=late).start()
      atexit.register(lambda: print('atexit ran'))
      kept = open('/tmp/unclosed', 'w')
      kept.write('data')
      """)
  t.expect(ending?.result.stdoutText == "thread done\natexit ran\n" && ending?.result.returnCode == 0,
    "pool: a warm run ends as Python's exit does: non-daemon threads joined, then atexit handlers", ending?.result.stdoutText ?? "")
  let failing = "def f():\n    raise ValueError('no')\nf()"
  let coldFail = try? await sandbox.run(SandboxPayload.code(failing))
  let warmFail = await poolRun(pool, failing)
  let exits = [await poolRun(pool, "import sys; sys.exit(3)"), await poolRun(pool, "import sys; sys.exit('bye')"), await poolRun(pool, "raise SystemExit")]
  t.expect(
    warmFail?.result.returnCode == 1 && coldFail?.returnCode == 1 && warmFail?.result.stderr == coldFail?.stderr
      && exits.map { $0?.result.returnCode } == [3, 1, 0] && exits[1]?.result.stderrText == "bye\n",
    "pool: an uncaught exception prints the traceback a cold run prints (no frame of the driver), and SystemExit's statuses are Python's",
    "\(warmFail?.result.stderrText ?? "") vs \(coldFail?.stderrText ?? "") \(exits.map { $0?.result.returnCode })")

  // 6. Bounds: a timeout kills the warm run; cancelling the Task kills it.
  let spin = await poolRun(pool, "while True:\n    pass", timeout: .milliseconds(300))
  let task = Task { await poolRun(pool, "import time\ntime.sleep(30)") }
  usleep(300_000)
  task.cancel()
  let cancelled = await task.value
  t.expect(
    spin?.result.timedOut == true && spin?.result.limitHit == .timeout && spin?.result.duration ?? .zero < .seconds(5)
      && cancelled?.result.cancelled == true,
    "pool: a warm run's timeout counts from its dispatch and kills it; cancelling its Task kills it",
    "\(spin?.result.timedOut ?? false) \(cancelled?.result.cancelled ?? false)")

  // 7. Streaming: chunks, then the result.
  var chunks: [UInt8] = []
  var final: SandboxPoolRun? = nil
  for await event in pool.runStreaming(SandboxPayload.code("print('a', flush=True)\nprint('b')")) {
    switch event {
    case .stdout(let bytes): chunks += bytes
    case .finished(let run): final = run
    default: break
    }
  }
  t.expect(String(decoding: chunks, as: UTF8.self) == "a\nb\n" && final?.result.stdoutText == "a\nb\n",
    "pool: runStreaming delivers the output as it comes, then the result")

  // 8. Bad input touches nothing and says what to do.
  let badScript = await poolError { () async throws(SandboxError) in _ = try await pool.run(.script(sandboxPath: "/mnt/missing.py")) }
  let badVariable = await poolError { () async throws(SandboxError) in _ = try await pool.run(.code("1"), environment: ["PYTHONPATH": "/x"]) }
  let badFile = await poolError { () async throws(SandboxError) in _ = try await pool.run(.code("1"), files: ["../escape": [1]]) }
  let badArgument = await poolError { () async throws(SandboxError) in _ = try await pool.run(.code("1"), arguments: ["a\u{0}b"]) }
  let badPreload = await poolError { () async throws(SandboxError) in _ = try SandboxPool(sandbox: sandbox, options: .init(size: 1, preload: ["os; import x"])) }
  let badSize = await poolError { () async throws(SandboxError) in _ = try SandboxPool(sandbox: sandbox, options: .init(size: 65)) }
  var broken: SandboxPool? = nil
  let missing = await poolError { () async throws(SandboxError) in
    let made = try SandboxPool(sandbox: sandbox, options: .init(size: 1, preload: ["sandbox_no_such_module"]))
    broken = made
    try await made.waitUntilReady()
  }
  await broken?.close()
  t.expect(
    badScript.contains("files") && badVariable.contains("PYTHONPATH") && badFile.contains("escape")
      && badArgument.contains("NUL") && badPreload.contains("module name") && badSize.contains("65")
      && missing.contains("No module named 'sandbox_no_such_module'"),
    "pool: bad input is refused with what to do (a script not in files, PYTHON* per run, ../, NUL, a bad preload, a size, a preload that fails)",
    "\(badScript) | \(badVariable) | \(badFile) | \(badArgument) | \(badPreload) | \(badSize) | \(missing)")

  // 9. Mount dirs: a fresh one per run, inputs written but not reported, the caller's afterwards.
  if let tracked = await makePool(sandbox, SandboxPool.Options(size: 1, mountDirectories: true)) {
    let script = Array("import sys\nprint(open('/mnt/in/data.txt').read(), sys.argv[1:])\nopen('/mnt/out.txt', 'w').write('result')\nleft = open('/mnt/unclosed', 'w'); left.write('flushed')".utf8)
    var run = try? await tracked.run(
      .script(sandboxPath: "/mnt/job.py"), arguments: ["x"], files: ["job.py": script, "in/data.txt": Array("input".utf8)])
    try? await tracked.waitUntilReady()
    let next = await poolRun(tracked, "import os\nprint(sorted(os.listdir('/mnt')))")
    let output = try? run?.mountDirectory?.readOutput("out.txt")
    let unclosed = try? run?.mountDirectory?.readOutput("unclosed")
    let path = run?.mountDirectory?.path ?? "/nonexistent"
    t.expect(
      run?.result.stdoutText == "input ['x']\n" && run?.result.changedFiles == ["out.txt", "unclosed"]
        && output?.bytes == Array("result".utf8) && unclosed?.bytes == Array("flushed".utf8)
        && next?.result.stdoutText == "[]\n" && next?.mountDirectory?.path != path,
      "pool: each run gets a fresh mount dir with its files in place (not reported as changes); an unclosed file is flushed; the dir is the caller's",
      "\(run?.result.stdoutText ?? "") \(run?.result.stderrText ?? "") \(run?.result.changedFiles ?? []) \(next?.result.stdoutText ?? "")")
    let existed = access(path, F_OK) == 0
    run = nil
    t.expect(existed && access(path, F_OK) != 0, "pool: a run's mount dir is removed with the last reference to its result", path)
    await tracked.close()
  } else {
    t.expect(false, "pool: a pool with mount dirs opens")
    t.expect(false, "pool: (skipped with it)")
  }

  // 10. The cold fallback: a size-0 pool, and more runs at once than slots.
  if let empty = await makePool(sandbox, SandboxPool.Options(size: 0)), let one = await makePool(sandbox, SandboxPool.Options(size: 1)) {
    let cold = await poolRun(empty, "print('cold')")
    let burst = await withTaskGroup(of: SandboxPoolRun?.self) { group -> [SandboxPoolRun?] in
      for _ in 0..<3 { group.addTask { await poolRun(one, "import time; time.sleep(0.3); print('ok')") } }
      var all: [SandboxPoolRun?] = []
      for await run in group { all.append(run) }
      return all
    }
    t.expect(
      cold?.warm == false && cold?.result.stdoutText == "cold\n"
        && burst.allSatisfy { $0?.result.stdoutText == "ok\n" } && burst.contains { $0?.warm == false },
      "pool: an empty pool falls back to a cold start, with no error (result.warm says which)",
      "\(burst.map { $0?.warm })")
    await empty.close()
    await one.close()
  } else {
    t.expect(false, "pool: an empty pool opens")
  }

  // 11. Closing mid-run ends everything: the running payload and its daemon, the idle slots.
  if let closing = await makePool(sandbox, SandboxPool.Options(size: 2, environment: ["SANDBOX_POOL_TAG": "\(tag)c"])) {
    let running = Task {
      await poolRun(closing, """
        import os, time
        if os.fork() == 0:
            os.setsid()
            os.execvp('sleep', ['sleep', '60'])
        time.sleep(60)
        """)
    }
    usleep(400_000)
    await closing.close()
    let end = await running.value
    let after = await poolError { () async throws(SandboxError) in _ = try await closing.run(.code("1")) }
    t.expect(
      end?.result.cancelled == true && !taggedProcessesRemain("\(tag)c", seconds: 1) && after.contains("closed"),
      "pool: close() mid-run ends the running payload (cancelled), its daemon and every idle slot; later runs are refused",
      "\(end?.result.cancelled ?? false) \(after)")
  } else {
    t.expect(false, "pool: a pool to close opens")
  }
  // 12. The attack pass's regressions: what a warm run must not lose or misreport, against a cold run.
  if let tracked = await makePool(sandbox, SandboxPool.Options(size: 1, mountDirectories: true)) {
    let keeps = """
      import ctypes, json, sys
      json.kept = open('/mnt/from-json', 'w'); json.kept.write('json data')
      sys.kept = open('/mnt/from-sys', 'w'); sys.kept.write('sys data')
      libc = ctypes.CDLL(None)
      libc.fopen.restype = ctypes.c_void_p
      libc.fputs(b'C data', ctypes.c_void_p(libc.fopen(b'/mnt/from-c', b'w')))
      libc.printf(b'from C printf\\n')
      print('py')
      """
    await poolFull(tracked)
    let run = try? await tracked.run(.code(keeps))
    let read = { (name: String) in String(decoding: (try? run?.mountDirectory?.readOutput(name))?.bytes ?? [], as: UTF8.self) }
    t.expect(
      run?.warm == true && read("from-json") == "json data" && read("from-sys") == "sys data" && read("from-c") == "C data"
        && run?.result.stdoutText.contains("from C printf") == true && run?.result.stdoutText.contains("py") == true,
      "pool: a warm run flushes what a teardown would: files kept open by other modules, and C's stdio (printf, fopen)",
      "\(run?.result.stdoutText ?? "") \(read("from-json")) \(read("from-sys")) \(read("from-c"))")
    await tracked.close()
  } else {
    t.expect(false, "pool: a pool for the flush checks opens")
  }
  let spawnCode = "import multiprocessing as mp\ndef square(x):\n    return x * x\nif __name__ == '__main__':\n    with mp.get_context('spawn').Pool(2) as workers:\n        print(workers.map(square, [1, 2, 3]), open(__file__).read().count('square'))"
  await poolFull(pool)
  let spawned = await poolRun(pool, spawnCode, timeout: .seconds(60))
  let syntax = "x = 1\nprint((\"unclosed\""
  let coldSyntax = try? await sandbox.run(SandboxPayload.code(syntax))
  let warmSyntax = await poolRun(pool, syntax)
  t.expect(
    spawned?.result.stdoutText == "[1, 4, 9] 3\n" && warmSyntax?.result.stderr == coldSyntax?.stderr
      && warmSyntax?.result.returnCode == 1,
    "pool: a warm .code run's own file is on disk at its path: multiprocessing's spawn works, __file__ reads back the code, a SyntaxError shows its line",
    "\(spawned?.result.stdoutText ?? "") \(spawned?.result.stderrText.suffix(300) ?? "") | \(warmSyntax?.result.stderrText ?? "") vs \(coldSyntax?.stderrText ?? "")")
  let statuses = [
    await poolRun(pool, "import sys; sys.exit(2 ** 70)"), await poolRun(pool, "import os; print('x'); os.close(1)"),
    await poolRun(pool, "import os, time; os.environ['TZ']; print(time.tzname)", environment: ["TZ": "EST5EDT"]),
    await poolRun(pool, "import os, sys\nos._exit = lambda code: None\nsys.exit(7)"),
    await poolRun(pool, "import sys\nclass Odd:\n    def __str__(self):\n        raise SystemExit(9)\nsys.exit(Odd())"),
    await poolRun(pool, "import builtins, os\nclass Last:\n    def __del__(self):\n        os.write(1, b'finalised\\n')\nbuiltins.kept = Last()\nprint('body', flush=True)"),
  ]
  t.expect(
    statuses[0]?.result.returnCode == 255 && statuses[1]?.result.returnCode == 120
      && statuses[1]?.result.stderrText.contains("Exception ignored") == true
      && statuses[2]?.result.stdoutText == "('EST', 'EDT')\n" && statuses[3]?.result.returnCode == 7
      && statuses[4]?.result.returnCode == 1 && statuses[5]?.result.stdoutText == "body\nfinalised\n",
    "pool: exit statuses as a cold run's (2**70 is 255, a failed stdout flush 120, a payload's own os._exit or a SystemExit from str() change nothing), TZ applies, a finaliser hung on builtins runs",
    "\(statuses.map { $0?.result.returnCode }) \(statuses[2]?.result.stdoutText ?? "") \(statuses[5]?.result.stdoutText ?? "")")
  if let chatty = await makePool(sandbox, SandboxPool.Options(size: 1, preload: ["this"])) {
    await poolFull(chatty)
    let quiet = await poolRun(chatty, "print('x')")
    t.expect(quiet?.warm == true && quiet?.result.stdoutText == "x\n", "pool: what a preload prints is not in the run's output", quiet?.result.stdoutText ?? "")
    await chatty.close()
  } else {
    t.expect(false, "pool: a pool preloading `this` opens")
  }
  let readyBefore = pool.readyCount
  let conflict = await poolError { () async throws(SandboxError) in _ = try await pool.run(.code("1"), files: ["a": [1], "a/b": [2]]) }
  let longName = await poolError { () async throws(SandboxError) in _ = try await pool.run(.code("1"), files: [String(repeating: "n", count: 300): [1]]) }
  let loader = await poolError { () async throws(SandboxError) in _ = try await pool.run(.code("1"), environment: ["LD_PRELOAD": "/x.so"]) }
  let locale = await poolError { () async throws(SandboxError) in _ = try await pool.run(.code("1"), environment: ["LC_ALL": "C"]) }
  t.expect(
    conflict.contains("directory") && longName.contains("too deep or too long") && loader.contains("LD_PRELOAD")
      && locale.contains("LC_ALL")
      && pool.readyCount == readyBefore,
    "pool: inputs the sandbox could not write (a file that must be a directory, a 300-byte name) and LD_* are refused before a slot is used",
    "\(conflict) | \(longName) | \(loader)")
  var setupErrors: [String] = []
  if let cold = await makePool(sandbox, SandboxPool.Options(size: 0)) {
    for round in 0..<20 {
      let task = Task { await poolError { () async throws(SandboxError) in _ = try await cold.run(.code("import time; time.sleep(5)")) } }
      usleep(UInt32(round % 5) * 3_000)
      task.cancel()
      let error = await task.value
      if !error.isEmpty && !error.contains("cancelled") { setupErrors.append(error) }
    }
    await cold.close()
  }
  t.expect(setupErrors.isEmpty, "pool: a cold run cancelled while it starts is reported as cancelled, never as a setup failure (20 tries)", "\(setupErrors.prefix(2))")
  let saved = Sandbox.Admission.maximum
  Sandbox.Admission.maximum = 3  // the main pool (2) is open
  let alone = await poolError { () async throws(SandboxError) in _ = try SandboxPool(sandbox: sandbox, options: .init(size: 3)) }
  Sandbox.Admission.maximum = 5
  var secondPool: SandboxPool? = nil
  let together = await poolError { () async throws(SandboxError) in
    secondPool = try SandboxPool(sandbox: sandbox, options: .init(size: 2))
    _ = try SandboxPool(sandbox: sandbox, options: .init(size: 1))
  }
  await secondPool?.close()
  let afterClose = await poolError { () async throws(SandboxError) in
    let third = try SandboxPool(sandbox: sandbox, options: .init(size: 2))
    await third.close()
  }
  Sandbox.Admission.maximum = saved
  let wedge = secondPool != nil && afterClose.isEmpty && together.contains("pools already open") ? alone : "second: \(secondPool != nil) after close: \(afterClose) together: \(together)"
  let exitDirectory = "\(temp)/sandbox-pool-exit-\(getpid())"
  mkdir(exitDirectory, 0o700)
  let exitStatus = shellOutput("TMPDIR='\(exitDirectory)' '\(CommandLine.arguments[0])' --pool-exit-victim '\(venv)' >/dev/null 2>&1; echo $?").trimmingWhitespace
  let leftDirectories = shellOutput("ls -A '\(exitDirectory)'").trimmingWhitespace
  shell("rm -rf '\(exitDirectory)'")
  t.expect(
    wedge.contains("Admission") && exitStatus == "0" && leftDirectories.isEmpty,
    "pool: a pool that would hold every Admission slot is refused; a process that exits without close() leaves no idle slot's mount dir",
    "\(wedge) | \(exitStatus) | \(leftDirectories)")

  let idleBefore = taggedProcessesRemain("poolslot\(getpid())", seconds: 0)
  await pool.close()
  var descriptorsAfter = openDescriptorCount()
  for _ in 0..<40 where descriptorsAfter > descriptorsBefore {  // a thread of the pool may still be closing one
    usleep(50_000)
    descriptorsAfter = openDescriptorCount()
  }
  t.expect(idleBefore && !taggedProcessesRemain("poolslot\(getpid())", seconds: 1) && descriptorsAfter <= descriptorsBefore,
    "pool: close() ends the idle slots: no process of the pool is left, and no descriptor of its runs is kept",
    "\(descriptorsBefore) -> \(descriptorsAfter)")
}

/// `unit_tests --pool-exit-victim VENV`: a pool of 2 with mount dirs (in TMPDIR), ready, then
/// exit(0) without close().
func runPoolExitVictim(_ arguments: [String]) async -> Never {
  guard arguments.count == 3,
    let sandbox = try? Sandbox(config: SandboxConfig(venvPath: arguments[2], appArmor: .disabled)),
    let pool = try? SandboxPool(sandbox: sandbox, options: .init(size: 2, mountDirectories: true))
  else { exit(3) }
  try? await pool.waitUntilReady()
  await poolFull(pool)
  exit(0)
}

/// `unit_tests --pool-victim VENV TAG CODE`: a pool of 2 whose runs (two at a time, for ever) run
/// CODE, until this process is killed (tests/host_death_test.py). Mount dirs go in TMPDIR.
func runPoolVictim(_ arguments: [String]) async -> Never {
  guard arguments.count == 5 else {
    print("usage: unit_tests --pool-victim VENV TAG CODE")
    exit(2)
  }
  let (venv, tag, code) = (arguments[2], arguments[3], arguments[4])
  guard
    let sandbox = try? Sandbox(
      config: SandboxConfig(venvPath: venv, appArmor: .disabled, limits: SandboxLimits(cpuSeconds: 77, openFiles: 77))),
    let pool = try? SandboxPool(
      sandbox: sandbox,
      options: .init(size: 2, preload: ["json"], environment: ["SANDBOX_DEATH_TAG": tag], mountDirectories: true))
  else { exit(3) }
  await withTaskGroup(of: Void.self) { group in
    for _ in 0..<2 {
      group.addTask {
        while true { _ = try? await pool.run(.code(code), timeout: .milliseconds(2500)) }
      }
    }
  }
  exit(0)
}
