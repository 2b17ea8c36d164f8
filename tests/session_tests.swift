// Sessions, end to end (built into tests/build/unit_tests): state between cells, structured
// results, per-cell output and changes, timeouts, and the attacks the sessions issue names (a
// daemon, garbage and forgeries on the channel, a closed channel, many sessions at once).
//
// Every target is a canary these tests create; every loop and bomb is bounded by the test.

import Glibc

/// One cell; nil (and a diagnostic line) when it throws.
func cell(_ session: SandboxSession, _ code: String, timeout: Duration? = nil) async -> SandboxCellResult? {
  do throws(SandboxError) {
    return try await session.execute(code, timeout: timeout)
  } catch {
    print("# cell failed: \(error.description)")
    return nil
  }
}

func openSession(
  _ sandbox: Sandbox, mount: String? = nil, environment: [String: String] = [:],
  options: SandboxSession.Options = SandboxSession.Options()
) async -> SandboxSession? {
  do throws(SandboxError) {
    return try await sandbox.openSession(mountDirectory: mount, environment: environment, options: options)
  } catch {
    print("# open failed: \(error.description)")
    return nil
  }
}

/// Whether a process whose environment holds `tag` is alive (waiting up to `seconds` for none).
func taggedProcessesRemain(_ tag: String, seconds: Double = 5) -> Bool {
  let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
  repeat {
    let found = shellOutput("grep -l -a -s -- '\(tag)' /proc/[0-9]*/environ 2>/dev/null | grep -v self | head -1")
    if found.isEmpty { return false }
    usleep(50_000)
  } while ContinuousClock.now < deadline
  return true
}

func testSessions(_ t: inout Tally, venv: String, temp: String) async {
  guard let sandbox = try? Sandbox(config: SandboxConfig(venvPath: venv, appArmor: .disabled)),
    let offline = try? Sandbox(config: SandboxConfig(venvPath: venv, appArmor: .disabled, networkEnabled: false)),
    let session = await openSession(sandbox)
  else { return t.expect(false, "session: opens for \(venv)") }

  // 1. State persists: a variable, an import, a function, a file in /tmp.
  _ = await cell(session, "x = 41\nimport json\ndef double(v):\n    return 2 * v\nopen('/tmp/kept', 'w').write('kept')")
  let state = await cell(session, "(x + 1, json.dumps([1]), double(21), open('/tmp/kept').read())")
  t.expect(state?.value == "(42, '[1]', 42, 'kept')", "session: a variable, an import, a function and a /tmp file persist between cells", state?.value ?? "")

  // 2. Last-expression values, None, and plain statements.
  let values = [await cell(session, "x + 1"), await cell(session, "None"), await cell(session, "y = 3"), await cell(session, "'a' * 3")]
  t.expect(values.map { $0?.value } == ["42", nil, nil, "'aaa'"] && values.allSatisfy { $0?.exception == nil }, "session: the last expression's repr comes back; None and statements give none", "\(values.map { $0?.value })")

  // 3. Structured exceptions; SystemExit is one, and the session goes on.
  let zero = await cell(session, "def f():\n    return 1 / 0\nf()")
  t.expect(zero?.exception?.type == "ZeroDivisionError" && zero?.exception?.message == "division by zero"
    && zero?.exception?.traceback.first == "Traceback (most recent call last):"
    && zero?.exception?.traceback.contains { $0.contains("<cell") && $0.contains("in f") } == true
    && zero?.exception?.traceback.contains { $0.contains("main.py") } == false,
    "session: an exception comes back with its type, message and traceback (without the driver's frames)", "\(String(describing: zero?.exception))")
  let syntax = await cell(session, "def (:")
  t.expect(syntax?.exception?.type == "SyntaxError" && syntax?.exception?.traceback.last?.hasPrefix("SyntaxError") == true, "session: a SyntaxError is reported, not raised in the driver", "\(String(describing: syntax?.exception))")
  let exit = await cell(session, "import sys; sys.exit(3)")
  let after = await cell(session, "x")
  t.expect(exit?.exception?.type == "SystemExit" && exit?.exception?.message == "3" && after?.value == "41" && exit?.sessionEnded == nil, "session: SystemExit is reported as an exception and the session keeps its state", "\(String(describing: exit?.exception)) \(after?.value ?? "")")
  let custom = await cell(session, "class Oops(Exception): pass\nraise Oops('no')")
  t.expect(custom?.exception?.type == "__main__.Oops" && custom?.exception?.message == "no", "session: a class of the cell's own is named by its module", custom?.exception?.type ?? "")

  // 4. stdout and stderr per cell.
  let first = await cell(session, "import sys, subprocess\nprint('out-1', flush=True); print('err-1', file=sys.stderr)\nsubprocess.run(['echo', 'child-1'])")
  let second = await cell(session, "print('out-2')")
  t.expect(first?.stdoutText == "out-1\nchild-1\n" && first?.stderrText == "err-1\n" && second?.stdoutText == "out-2\n" && second?.stderrText == "",
    "session: each cell gets its own stdout and stderr, a child process's included", "\(first?.stdoutText.debugDescription ?? "") \(second?.stdoutText.debugDescription ?? "")")

  // 5. Timeout: KeyboardInterrupt, state kept; Task cancellation interrupts the same way.
  let spin = await cell(session, "while True:\n    pass", timeout: .milliseconds(300))
  let survived = await cell(session, "x")
  t.expect(spin?.timedOut == true && spin?.limitHit == .timeout && spin?.exception?.type == "KeyboardInterrupt" && spin?.sessionEnded == nil && survived?.value == "41",
    "session: a cell past its timeout is interrupted and the session keeps its state", "\(String(describing: spin?.exception)) \(spin?.sessionEnded ?? "")")
  let task = Task { await cell(session, "import time\nwhile True:\n    time.sleep(0.01)", timeout: .seconds(30)) }
  usleep(300_000)
  task.cancel()
  let cancelled = await task.value
  let kept = await cell(session, "x")
  t.expect(cancelled?.exception?.type == "KeyboardInterrupt" && cancelled?.sessionEnded == nil && kept?.value == "41", "session: cancelling the Task interrupts the cell; the session goes on", "\(String(describing: cancelled?.exception))")

  // 6. The output budget is the session's.
  if let small = try? Sandbox(config: SandboxConfig(venvPath: venv, appArmor: .disabled, limits: SandboxLimits(outputLimitBytes: 1000))), let budget = await openSession(small) {
    let a = await cell(budget, "print('a' * 599)")
    let b = await cell(budget, "print('b' * 599)")
    t.expect(a?.stdout.count == 600 && a?.outputTruncated == false && b?.stdout.count == 400 && b?.outputTruncated == true, "session: output is a session budget (--max-output-bytes over all cells)", "\(a?.stdout.count ?? -1) \(b?.stdout.count ?? -1)")
    await budget.close()
  } else {
    t.expect(false, "session: output budget session opens")
  }

  // 7. Per-cell changes in the mount dir.
  if let mount = try? SandboxMountDirectory(prefix: "sandbox-session-"), let tracked = await openSession(sandbox, mount: mount.path) {
    let made = await cell(tracked, "open('/mnt/one', 'w').write('1')")
    let swapped = await cell(tracked, "import os\nos.remove('/mnt/one'); open('/mnt/two', 'w').write('2')")
    let quiet = await cell(tracked, "1")
    t.expect(made?.changedFiles == ["one"] && made?.deletedFiles == [] && swapped?.changedFiles == ["two"] && swapped?.deletedFiles == ["one"] && quiet?.changedFiles == [] && quiet?.deletedFiles == [],
      "session: each cell reports the mount dir's changes since the previous cell", "\(made?.changedFiles ?? []) \(swapped?.changedFiles ?? []) \(swapped?.deletedFiles ?? [])")
    // A daemon keeps writing after its cell: it dies with the session, and what it wrote between
    // cells is reported by the next cell, not lost.
    let tag = "sessiondaemon\(getpid())"
    _ = await cell(tracked, """
      import os, time
      os.environ['TAG'] = '\(tag)'
      if os.fork() == 0:
          os.setsid()
          os.execvpe('python3', ['python3', '-c', "import time\\nwhile True:\\n    open('/mnt/beat', 'a').write('x'); time.sleep(0.01)"], dict(os.environ))
      while not os.path.exists('/mnt/beat'):
          time.sleep(0.01)
      """)
    usleep(100_000)
    let next = await cell(tracked, "1")
    let closed = await tracked.close()
    let size = (try? mount.readOutput("beat"))?.size ?? -1
    usleep(200_000)
    let later = (try? mount.readOutput("beat"))?.size ?? -1
    t.expect(next?.changedFiles == ["beat"] && closed?.cleanupIncomplete == nil && size > 0 && size == later && !taggedProcessesRemain(tag, seconds: 1),
      "session: a cell's daemon dies with the session, and its writes between cells are the next cell's changes", "\(next?.changedFiles ?? []) \(size) \(later) \(closed?.cleanupIncomplete ?? "")")
    t.expect(closed?.changedFiles.sorted() == ["beat", "two"] && closed?.deletedFiles == [], "session: close reports the whole session's changes, after every process is gone", "\(closed?.changedFiles ?? [])")
    mount.remove()
  } else {
    t.expect(false, "session: a session with a mount dir opens")
    t.expect(false, "session: (skipped with it)")
    t.expect(false, "session: (skipped with it)")
  }

  // 8. A cell that ignores SIGINT past its timeout ends the session; nothing runs after.
  let stubborn = await cell(session, "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass", timeout: .milliseconds(300))
  var refused = false
  do throws(SandboxError) { _ = try await session.execute("x") } catch { if case .sessionEnded = error { refused = true } }
  let end = await session.close()
  t.expect(stubborn?.timedOut == true && stubborn?.sessionEnded?.contains("SIGINT") == true && refused && session.endReason != nil && end?.limitHit == .timeout,
    "session: a cell that ignores its interrupt ends the session (killed, reported); later cells are refused", "\(stubborn?.sessionEnded ?? "") \(refused)")

  // 9. Hostile channel: garbage, a forged oversized frame, a malformed reply, a closed channel,
  //    a forged reply while no cell runs. Each ends that session with a clear reason; none
  //    hangs or crashes the host.
  let forge = "import os, sys\ntoken = sys._getframe(1).f_locals['token']\ndef reply(body):\n    os.write(3, len(body).to_bytes(4, 'big') + body)\n"
  let attacks: [(String, String, String)] = [
    ("garbage on the channel", "import os; os.write(3, b'\\xff' * 64)", "cap"),
    ("a frame header claiming 4 GiB", "import os; os.write(3, b'\\xff\\xff\\xff\\xff')", "cap"),
    ("a reply without the cell's token", "import os; os.write(3, (2).to_bytes(4, 'big') + b'DZ')", "protocol"),
    ("a reply with the token and a field the protocol lacks", forge + "reply(b'D' + token + b'S' + (2).to_bytes(4, 'big') + b'ok' + b'Q' + (1).to_bytes(4, 'big') + b'x')", "malformed"),
    ("a reply with the token and a field past its frame", forge + "reply(b'D' + token + b'S' + (200).to_bytes(4, 'big') + b'ok')", "malformed"),
    ("a closed channel", "import os; os.close(3)", ""),
    ("an exit of the interpreter", "import os; os._exit(9)", "status 9"),
  ]
  for (name, code, words) in attacks {
    guard let victim = await openSession(sandbox) else { t.expect(false, "session: \(name): opens"); continue }
    let hit = await cell(victim, code)
    var ended = false
    do throws(SandboxError) { _ = try await victim.execute("1") } catch { if case .sessionEnded = error { ended = true } }
    let over = await victim.close()
    t.expect(hit?.sessionEnded != nil && (words.isEmpty || hit?.sessionEnded?.contains(words) == true) && ended && over != nil,
      "session: \(name) ends the session with a clear reason", hit?.sessionEnded ?? "no reason")
  }
  // A daemon that forges a reply once its cell is over: the unexpected frame ends the session.
  if let victim = await openSession(sandbox) {
    _ = await cell(victim, "import os, time\nif os.fork() == 0:\n    time.sleep(0.2)\n    body = b'D' + b'S' + (2).to_bytes(4, 'big') + b'ok'\n    os.write(3, len(body).to_bytes(4, 'big') + body)\n    os._exit(0)")
    usleep(600_000)
    var ended = false
    do throws(SandboxError) { _ = try await victim.execute("1") } catch { if case .sessionEnded = error { ended = true } }
    t.expect(ended && victim.endReason?.contains("protocol") == true, "session: a reply forged while no cell runs ends the session", victim.endReason ?? "")
    await victim.close()
  } else {
    t.expect(false, "session: forged-reply session opens")
  }

  // A cell that forges a whole valid reply (the token read from the driver's frame) and runs on:
  // its result is what it forged (advisory), but the driver's real reply, later, is refused as
  // the next cell's, and the session ends: nothing is credited to the wrong cell.
  if let victim = await openSession(sandbox) {
    let forged = await cell(victim, forge + "reply(b'D' + token + b'S' + (2).to_bytes(4, 'big') + b'ok' + b'v' + (8).to_bytes(4, 'big') + b\"'FORGED'\")\nimport time\ntime.sleep(1)\nprint('real end')\n'REAL'", timeout: .seconds(5))
    let next = await cell(victim, "'NEXT'", timeout: .seconds(5))
    t.expect(forged?.value == "'FORGED'" && next?.value == nil && next?.sessionEnded?.contains("protocol") == true,
      "session: a cell that forges its own reply cannot pass its real one off as the next cell's", "\(next?.value ?? "nil") \(next?.sessionEnded ?? "")")
    await victim.close()
  } else {
    t.expect(false, "session: forging session opens")
  }
  // An interrupt that lands before the cell runs (a timeout of 1 ns, a 4 MiB cell with 1 ms),
  // 200 times over with both cores busy (two spinners the test starts and stops): the cell
  // reports KeyboardInterrupt and the session keeps its state. (A SIGINT landing just before
  // time.sleep's system call waits for it in CPython: the host repeats it until the cell answers.)
  if let racer = await openSession(sandbox) {
    var survived = 0
    _ = await cell(racer, "x = 42")
    let spin = "sandbox-session-spinner-\(getpid())"
    shell("for i in 1 2; do timeout -s KILL 120 sh -c 'while :; do :; done # \(spin)' & done")
    defer { shell("pkill -KILL -f '\(spin)'") }  // KILL: this process's threads may block SIGTERM, and children inherit the mask
    for round in 0..<200 {
      let code = round % 2 == 0 ? "import time; time.sleep(5)" : "#" + String(repeating: "x", count: 4 << 20) + "\nimport time; time.sleep(5)"
      let hit = await cell(racer, code, timeout: round % 2 == 0 ? .nanoseconds(1) : .milliseconds(1))
      if hit?.exception?.type == "KeyboardInterrupt" && hit?.sessionEnded == nil { survived += 1 }
    }
    let kept = await cell(racer, "x")
    t.expect(survived == 200 && kept?.value == "42", "session: 200 interrupts that land before the cell runs, both cores busy, stop the cell, never the session", "\(survived)/200 \(racer.endReason ?? "")")
    await racer.close()
  } else {
    t.expect(false, "session: race session opens")
  }
  // Caps: an exception whose type name is longer than the reply's cap is cut, not fatal.
  if let capped = await openSession(sandbox) {
    let long = await cell(capped, "raise type('E' * 5000, (Exception,), {})('benign')")
    let after = await cell(capped, "1")
    t.expect(long?.exception?.type.hasSuffix("...") == true && long?.sessionEnded == nil && after?.value == "1", "session: a long exception type is cut to its cap and the session goes on", long?.sessionEnded ?? "")
    var refusedHuge = false
    do throws(SandboxError) { _ = try await capped.execute("1", timeout: .seconds(Int64.max)) } catch { if case .invalidTimeout = error { refusedHuge = true } }
    t.expect(refusedHuge, "session: a timeout past Sandbox.longestTimeout is refused, not a crash")
    await capped.close()
  } else {
    t.expect(false, "session: caps session opens")
  }

  // 10. Idle timeout and lifetime.
  for (name, options) in [("idle", SandboxSession.Options(idleTimeout: .milliseconds(300))), ("lifetime", SandboxSession.Options(lifetime: .milliseconds(500)))] {
    guard let brief = await openSession(sandbox, options: options) else { t.expect(false, "session: \(name) session opens"); continue }
    _ = await cell(brief, "1")
    usleep(900_000)
    var ended = false
    do throws(SandboxError) { _ = try await brief.execute("1") } catch { if case .sessionEnded = error { ended = true } }
    t.expect(ended && brief.endReason?.contains(name) == true, "session: the \(name) bound ends the session", brief.endReason ?? "")
  }

  // 11. Both network modes: the host's interfaces with the network on, loopback only without.
  let interfaces = "len(open('/proc/net/dev').read().splitlines()) - 2"
  if let on = await openSession(sandbox), let off = await openSession(offline) {
    let seen = (await cell(on, interfaces))?.value.flatMap { Int($0) } ?? 0
    let alone = await cell(off, interfaces)
    let refusedConnection = await cell(off, "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9), 1)\nexcept OSError as e:\n    print(type(e).__name__)")
    t.expect(seen >= 2 && alone?.value == "1" && refusedConnection?.stdoutText.isEmpty == false,
      "session: the network modes apply (loopback only when off)", "\(seen) \(alone?.value ?? "")")
    await on.close()
    await off.close()
  } else {
    t.expect(false, "session: sessions in both network modes open")
  }

  // 12. 20 sessions at once: no cross-talk.
  let sessions = await withTaskGroup(of: (Int, SandboxSession?).self) { group in
    for index in 0..<20 { group.addTask { (index, await openSession(sandbox)) } }
    var all: [Int: SandboxSession] = [:]
    for await (index, opened) in group { if let opened { all[index] = opened } }
    return all
  }
  let answers = await withTaskGroup(of: (Int, String?).self) { group in
    for (index, opened) in sessions {
      group.addTask {
        _ = await cell(opened, "v = \(index)\nimport os\nopen('/tmp/mine-\(index)', 'w').write(str(v))")
        return (index, (await cell(opened, "(v, open('/tmp/mine-\(index)').read(), [f for f in os.listdir('/tmp') if f.startswith('mine')])"))?.value)
      }
    }
    var all: [Int: String] = [:]
    for await (index, value) in group { all[index] = value }
    return all
  }
  for opened in sessions.values { await opened.close() }
  let wrong = (0..<20).filter { answers[$0] != "(\($0), '\($0)', ['mine-\($0)'])" }
  t.expect(sessions.count == 20 && wrong.isEmpty, "session: 20 sessions at once keep their state apart", "\(sessions.count) opened, wrong: \(wrong.map { "\($0)=\(answers[$0] ?? "nil")" })")

  // 13. matplotlib: a shown figure and one left open come back as PNGs (where the venv has it).
  let hasMatplotlib = shellOutput("'\(venv)/bin/python' -c 'import matplotlib' 2>/dev/null && echo yes") == "yes\n"
  if hasMatplotlib, let plots = await openSession(sandbox) {
    let shown = await cell(plots, "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()\nplt.figure()\nplt.plot([3, 2, 1])\nNone")
    let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    t.expect(shown?.images.count == 2 && shown?.images.allSatisfy { Array($0.prefix(8)) == signature && $0.count > 1000 } == true && shown?.stderrText == "",
      "session: a shown figure and one left open come back as PNG images, with nothing on stderr", "\(shown?.images.count ?? -1) \(shown?.stderrText ?? "")")
    await plots.close()
  } else {
    t.skip("session: matplotlib figures come back as PNG images", "matplotlib is not installed in \(venv)")
  }
  if let shows = await openSession(sandbox) {
    let png = await cell(shows, "display(b'\\x89PNG\\r\\n\\x1a\\n' + b'rest'); display('text')")
    t.expect(png?.images == [[0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + Array("rest".utf8)] && png?.stdoutText == "'text'\n", "session: display() returns PNG bytes as an image and prints anything else", "\(png?.images.count ?? -1) \(png?.stdoutText ?? "")")
    await shows.close()
  } else {
    t.expect(false, "session: display session opens")
  }

  // 15. Streaming, without timed assertions: the payload prints, then waits for a file the test
  //     creates only once it has seen the first chunk.
  if let mount = try? SandboxMountDirectory(prefix: "sandbox-stream-") {
    let waiter = "import os, sys, time\nprint('first', flush=True)\nwhile not os.path.exists('/mnt/go'):\n    time.sleep(0.01)\nprint('second'); print('err', file=sys.stderr)"
    var order: [String] = []
    var final: SandboxResult? = nil
    for await event in sandbox.runStreaming(.code(waiter), mountDirectory: mount.path, timeout: .seconds(20)) {
      switch event {
      case .stdout(let bytes):
        order.append("out:" + String(decoding: bytes, as: UTF8.self))
        if order.count == 1 { shell("touch '\(mount.path)/go'") }
      case .stderr(let bytes): order.append("err:" + String(decoding: bytes, as: UTF8.self))
      case .finished(let result): final = result
      case .failed(let error): order.append("failed: \(error)")
      }
    }
    t.expect(order.first == "out:first\n" && order.contains("out:second\n") && final?.stdoutText == "first\nsecond\n" && final?.timedOut == false,
      "stream: a run's first chunk arrives while the payload still waits for it, then the rest and the result", "\(order) \(final?.stdoutText ?? "no result")")
    mount.remove()
  } else {
    t.expect(false, "stream: mount dir")
  }
  if let mount = try? SandboxMountDirectory(prefix: "sandbox-stream-"), let streamed = await openSession(sandbox, mount: mount.path) {
    var order: [String] = []
    var final: SandboxCellResult? = nil
    for await event in streamed.executeStreaming("import os, time\nprint('first', flush=True)\nwhile not os.path.exists('/mnt/go'):\n    time.sleep(0.01)\n'done'", timeout: .seconds(20)) {
      switch event {
      case .stdout(let bytes):
        order.append(String(decoding: bytes, as: UTF8.self))
        if order.count == 1 { shell("touch '\(mount.path)/go'") }
      case .stderr: break
      case .finished(let result): final = result
      case .failed(let error): order.append("failed: \(error)")
      }
    }
    // Ending the iteration early interrupts the cell; the session goes on.
    for await event in streamed.executeStreaming("import time\nprint('tick', flush=True)\ntime.sleep(30)", timeout: .seconds(60)) {
      if case .stdout = event { break }
    }
    let after = await cell(streamed, "'alive'")
    t.expect(order == ["first\n"] && final?.value == "'done'" && after?.value == "'alive'", "stream: a cell's output arrives as it comes; a consumer that stops early interrupts the cell, not the session", "\(order) \(final?.value ?? "nil") \(after?.value ?? "nil")")
    await streamed.close()
    mount.remove()
  } else {
    t.expect(false, "stream: session opens")
  }

  // 14. Bad input touches nothing.
  var refusedZero = false
  do throws(SandboxError) {
    _ = try await sandbox.openSession(options: SandboxSession.Options(cellTimeout: .zero))
  } catch {
    if case .invalidTimeout = error { refusedZero = true }
  }
  t.expect(refusedZero, "session: a zero cell timeout is refused before anything opens")
}

/// `unit_tests --session-victim VENV MOUNT_BASE TAG CODE`: two sessions that each run CODE as a
/// cell, for tests/host_death_test.py to kill with SIGKILL at any moment.
func runSessionVictim(_ arguments: [String]) async -> Never {
  guard arguments.count == 6 else {
    print("usage: unit_tests --session-victim VENV MOUNT_BASE TAG CODE")
    exit(2)
  }
  let (venv, base, tag, code) = (arguments[2], arguments[3], arguments[4], arguments[5])
  guard let sandbox = try? Sandbox(config: SandboxConfig(
    venvPath: venv, appArmor: .disabled, limits: SandboxLimits(cpuSeconds: 77, openFiles: 77)))
  else { exit(3) }
  await withTaskGroup(of: Void.self) { group in
    for index in 0..<2 {
      let directory = "\(base)/session\(index)"
      mkdir(directory, 0o755)
      group.addTask {
        guard let session = try? await sandbox.openSession(mountDirectory: directory, environment: ["SANDBOX_DEATH_TAG": tag]) else { return }
        _ = try? await session.execute(code, timeout: .milliseconds(2500))
      }
    }
  }
  exit(0)
}
