// Attacks on the end of a run, as regression tests (built into tests/build/unit_tests).
//
// Every target is a canary these tests create; every bomb is capped by the test itself. Each
// attack comes from the lifecycle issue: a payload that outlives `run` and fights back, a
// symlink swapped in where the host works, an impersonated setup failure, names that are not
// UTF-8, a hostile tree, a forged exit, unsafe reads, early kills, an ignored SIGCHLD.

import Glibc

/// Size and mode of a host file, without following a symlink; nil when it is missing.
func sizeAndMode(_ path: String) -> (size: Int, mode: UInt32)? {
  var info = stat()
  guard lstat(path, &info) == 0 else { return nil }
  return (Int(info.st_size), info.st_mode & 0o7777)
}

/// A fresh mount dir from the library's own helper (private 0700 parent); a failure when it cannot be made.
func freshMount(_ t: inout Tally) -> SandboxMountDirectory? {
  do throws(SandboxError) {
    return try SandboxMountDirectory(prefix: "sandbox-lifecycle-")
  } catch {
    t.expect(false, "lifecycle: a fresh mount dir", error.description)
    return nil
  }
}

func testLifecycle(_ t: inout Tally, venv: String, temp: String) async {
  // `unfiltered`: seccomp relaxed, so a payload can make set-id files (which the filter refuses)
  // and the host's own clearing is what the attack meets (as with --no-seccomp).
  guard let sandbox = try? Sandbox(config: SandboxConfig(venvPath: venv, appArmor: .disabled)),
    let unfiltered = try? Sandbox(config: SandboxConfig(venvPath: venv, appArmor: .disabled, seccompEnabled: false)),
    let unfilteredOffline = try? Sandbox(
      config: SandboxConfig(venvPath: venv, appArmor: .disabled, networkEnabled: false, seccompEnabled: false))
  else { return t.expect(false, "lifecycle: sandbox for \(venv)") }
  let iterations = Int(Sandbox.Sys.environmentValue("SANDBOX_RACE_ITERATIONS") ?? "") ?? 200

  // 1. A daemon that tries to demote pid 1, writes in a tight loop and keeps re-setting a
  //    setuid bit, with both cores busy: never seen writing after `run` returns. Network on with
  //    the filter (which refuses the demotion and the bit); off without it (both succeed, and
  //    the host's clearing races the daemon).
  let daemon = """
    import os, time
    try:
        os.sched_setscheduler(1, os.SCHED_IDLE, os.sched_param(0))
    except OSError:
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, 1, 19)
    except OSError:
        pass
    open("/mnt/suid", "w").close()
    for role in ("writer", "spinner"):
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                if role == "spinner":
                    while True:
                        pass
                fd = os.open("/mnt/beat", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                while True:
                    os.write(fd, b"x")
                    try:
                        os.chmod("/mnt/suid", 0o4755)
                    except OSError:
                        pass
            os._exit(0)
    while not os.path.exists("/mnt/beat"):
        time.sleep(0.001)
    time.sleep(0.005)
    """
  var grew = 0
  var setuidLeft = 0
  var neverRan = 0
  for network in [true, false] {
    for _ in 0..<(iterations / 2) {
      guard let mount = freshMount(&t) else { return }
      _ = payload(network ? sandbox : unfilteredOffline, daemon, mount: mount.path)
      let first = sizeAndMode("\(mount.path)/beat")
      usleep(20_000)
      let second = sizeAndMode("\(mount.path)/beat")
      if (first?.size ?? 0) == 0 { neverRan += 1 }
      if first?.size != second?.size { grew += 1 }
      if let mode = sizeAndMode("\(mount.path)/suid")?.mode, mode & 0o6000 != 0 { setuidLeft += 1 }
      mount.remove()
    }
  }
  t.expect(
    grew == 0 && setuidLeft == 0 && neverRan == 0,
    "lifecycle: a pid-1-demoting daemon writing in a tight loop (both cores busy) never writes after run returns, nor keeps a setuid bit (\(iterations) runs, both network modes)",
    "grew after return \(grew), setuid left \(setuidLeft), daemon never ran \(neverRan)")

  // 2. The symlink swap: a watcher replaces /mnt/a by a symlink to a host directory while the
  //    host clears set-id bits. The canary outside /mnt never changes.
  let canaryDirectory = "\(temp)/sandbox-canary-\(getpid())"
  shell("rm -rf '\(canaryDirectory)' && mkdir -p '\(canaryDirectory)' && touch '\(canaryDirectory)/x' && chmod 600 '\(canaryDirectory)/x'")
  let swapper = """
    import os
    os.mkdir("/mnt/a")
    open("/mnt/a/x", "w").close()
    os.chmod("/mnt/a/x", 0o4755)
    if os.fork() == 0:
        os.setsid()
        while True:
            try:
                os.rename("/mnt/a", "/mnt/b")
                os.symlink("\(canaryDirectory)", "/mnt/a")
                os.unlink("/mnt/a")
                os.rename("/mnt/b", "/mnt/a")
            except OSError:
                pass
    import time
    time.sleep(0.01)
    """
  var canaryChanged = 0
  for _ in 0..<max(20, iterations / 4) {
    guard let mount = freshMount(&t) else { break }
    _ = payload(unfiltered, swapper, mount: mount.path)
    if sizeAndMode("\(canaryDirectory)/x")?.mode != 0o600 { canaryChanged += 1 }
    mount.remove()
  }
  t.expect(canaryChanged == 0, "lifecycle: a symlink swapped in mid-clean-up never makes the host chmod a canary outside /mnt", "changed \(canaryChanged) times")
  shell("rm -rf '\(canaryDirectory)'")

  // 3. A payload impersonating bwrap's setup failure gets a result: tracking and clearing done.
  if let mount = freshMount(&t) {
    do throws(SandboxError) {
      let result = try await unfiltered.run(
        .code("import os, sys\nopen('/mnt/id', 'w').write('#!/bin/sh\\n')\nos.chmod('/mnt/id', 0o4755)\nsys.stderr.write('bwrap: Unknown option --foo\\n')\nsys.exit(1)"),
        mountDirectory: mount.path, timeout: .seconds(30))
      t.expect(
        result.returnCode == 1 && result.changedFiles == ["id"] && sizeAndMode("\(mount.path)/id")?.mode == 0o755,
        "lifecycle: a payload printing a fake bwrap error gets a result, not an error, with its changes tracked and set-id bits cleared",
        "\(result.returnCode) \(result.changedFiles) \(String(describing: sizeAndMode("\(mount.path)/id")))")
    } catch {
      t.expect(false, "lifecycle: a payload printing a fake bwrap error gets a result", "threw: \(error.description)")
    }
    mount.remove()
  }

  // 4. Names are bytes: two that decode alike, one that is U+FFFD itself; all reported and cleared.
  if let mount = freshMount(&t) {
    let names: [[UInt8]] = [[0xff], [0xfe], [0xff, 0xfe], Array("\u{FFFD}".utf8), Array("plain".utf8)]
    let made = payload(unfiltered, """
      import os
      for name in (b"\\xff", b"\\xfe", b"\\xff\\xfe", "\\ufffd".encode(), b"plain"):
          path = b"/mnt/" + name
          open(path, "w").close()
          os.chmod(path, 0o6755)
      """, mount: mount.path)
    let sorted = names.sorted { $0.lexicographicallyPrecedes($1) }
    t.expect(made?.changedPaths == sorted, "lifecycle: names that are not UTF-8 (two decoding alike) and a real U+FFFD are each reported once, exactly", "\(made?.changedPaths ?? [])")
    t.expect(made?.changedFiles == ["plain", "\u{FFFD}"], "lifecycle: changedFiles holds only the names that are valid UTF-8", "\(made?.changedFiles ?? [])")
    var cleared = 0
    for name in names {
      let path = Array(mount.path.utf8) + [UInt8(ascii: "/")] + name
      var info = stat()
      if Sandbox.Sys.withCName(path, { lstat($0, &info) }) == 0 && info.st_mode & 0o6000 == 0 { cleared += 1 }
    }
    t.expect(cleared == names.count, "lifecycle: the set-id bits of every such file are cleared", "\(cleared) of \(names.count)")
    mount.remove()
  }

  // 5. A setuid file deeper than PATH_MAX, and a bind root opened to everyone, are put right.
  if let mount = freshMount(&t) {
    chmod(mount.path, 0o700)
    let deep = payload(unfiltered, """
      import os
      os.chdir("/mnt")
      for i in range(40):
          name = "d%03d" % i + "x" * 200
          os.mkdir(name)
          os.chdir(name)
      open("deep", "w").close()
      os.chmod("deep", 0o4755)
      os.chmod("/mnt", 0o777)
      """, mount: mount.path)
    let found = deep?.changedPaths.first.map { Sandbox.Sys.validUTF8($0) ?? "" } ?? ""
    let cleared = shellOutput("find '\(mount.path)' -name deep -perm -4000 | wc -l").trimmingWhitespace
    t.expect(found.hasSuffix("/deep") && found.utf8.count > 4096 && cleared == "0", "lifecycle: a setuid file at a path longer than PATH_MAX is found and cleared", "\(found.utf8.count) bytes, setuid left: \(cleared)")
    t.expect(sizeAndMode(mount.path)?.mode == 0o700, "lifecycle: chmod 777 /mnt by the payload is undone", String(sizeAndMode(mount.path)?.mode ?? 0, radix: 8))
    t.expect(deep?.cleanupIncomplete == nil, "lifecycle: ... and the clean-up is complete", deep?.cleanupIncomplete ?? "")
    mount.remove()
  }

  // 6. pid 1's status eventfd cannot be taken to forge an early, false exit.
  let forged = payload(sandbox, """
    import ctypes, os, time
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    pidfd = libc.syscall(434, 1, 0)
    taken = [n for n in range(64) if libc.syscall(438, pidfd, n, 0) >= 0]
    errors = {ctypes.get_errno()}
    print("TAKEN" if taken else "REFUSED", taken or errors, flush=True)
    time.sleep(0.3)
    os._exit(3)
    """)
  t.expect(
    forged?.stdoutText == "REFUSED {1}\n" && forged?.returnCode == 3 && (forged?.duration ?? .zero) >= .milliseconds(300),
    "lifecycle: pidfd_getfd on pid 1 is refused (EPERM), so the exit cannot be forged", forged?.stdoutText ?? "")

  // 7. A hostile tree (many hard links with long names) stays within the caps it is given.
  if let mount = freshMount(&t),
    let capped = t.require(try? Sandbox(config: SandboxConfig(
      venvPath: venv, appArmor: .disabled,
      limits: SandboxLimits(trackedEntries: 5_000, trackedBytes: 1 << 20, reportedChanges: 1_000, reportedChangeBytes: 64 << 10),
      seccompEnabled: false)),
      "lifecycle: a sandbox with small snapshot caps")
  {
    let links = payload(capped, """
      import os
      open("/mnt/target", "w").close()
      os.chmod("/mnt/target", 0o4755)
      for i in range(20000):
          os.link("/mnt/target", "/mnt/%05d" % i + "L" * 200)
      """, mount: mount.path, timeout: .seconds(120))
    let listed = links?.changedPaths.count ?? -1
    let bytes = links?.changedPaths.reduce(0) { $0 + $1.count } ?? -1
    t.expect(
      links?.changesTruncated == true && listed <= 1_000 && bytes <= 64 << 10 && links?.cleanupIncomplete == nil,
      "lifecycle: 20,000 hard links with long names are reported within the caps (changesTruncated)", "\(listed) listed, \(bytes) bytes")
    t.expect(sizeAndMode("\(mount.path)/target")?.mode == 0o755, "lifecycle: ... and the set-id bit behind them is cleared all the same")
    mount.remove()
  }

  // 7b. A deep chain of long names: what the host holds grows with the caps, not with depth².
  if let mount = freshMount(&t) {
    let reset = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC)  // "5": VmHWM starts again from here
    if reset >= 0 {
      Sandbox.Sys.writeAll(reset, Array("5".utf8))
      close(reset)
    }
    let chain = payload(unfiltered, """
      import os, shutil
      fd = os.open("/mnt", os.O_RDONLY | os.O_DIRECTORY)
      for i in range(2000):
          os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
          os.mkdir("d" * 255, dir_fd=fd)
          child = os.open("d" * 255, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
          os.close(fd)
          fd = child
      os.close(os.open("deepest", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
      os.chmod("deepest", 0o4755, dir_fd=fd)
      """, mount: mount.path, timeout: .seconds(120))
    let peak = (Sandbox.Sys.readSmallFile("/proc/self/status")?.split(separator: "\n").first { $0.hasPrefix("VmHWM:") })
      .flatMap { Int(String($0.split(separator: " ").dropFirst().first ?? "")) } ?? -1
    let left = shellOutput("find '\(mount.path)' -name deepest -perm -4000 2>/dev/null | wc -l").trimmingWhitespace
    t.expect(
      chain?.changesTruncated == true && chain?.cleanupIncomplete == nil && left == "0" && peak > 0 && peak < 200 << 10,
      "lifecycle: a chain of 2,000 directories with 255-byte names is bounded by the caps (peak RSS \(peak >> 10) MiB), and the setuid file at its bottom is cleared",
      "truncated \(String(describing: chain?.changesTruncated)), incomplete \(chain?.cleanupIncomplete ?? "no"), setuid left \(left)")
    mount.remove()
  }

  // 7c. Set-id files in directories their owner may not read or search (an unprivileged
  //     caller's own directories, mode 0401, 0100, 000): opened up for the sweep, cleared.
  if getuid() == 0 {
    t.skip("lifecycle: set-id files in directories closed to their owner are cleared", "root reads and searches every directory anyway")
  } else if let mount = freshMount(&t) {
    let hidden = payload(unfiltered, """
      import os
      for mode in (0o401, 0o100, 0o000, 0o001):
          d = "/mnt/d%o" % mode
          os.mkdir(d)
          open(d + "/tool", "w").close()
          os.chmod(d + "/tool", 0o6755)
          os.chmod(d, mode)
      """, mount: mount.path)
    let left = shellOutput("chmod -R u+rx '\(mount.path)' 2>/dev/null; find '\(mount.path)' -perm /6000 -type f | wc -l").trimmingWhitespace
    t.expect(
      hidden?.cleanupIncomplete == nil && left == "0",
      "lifecycle: set-id files in directories closed to their owner (0401, 0100, 000, 001) are cleared",
      "left \(left), incomplete: \(hidden?.cleanupIncomplete ?? "no")")
    mount.remove()
  }

  // 8. Outputs are read safely: beneath the mount dir, regular files only, never blocking.
  if let mount = freshMount(&t) {
    let canary = "\(temp)/sandbox-output-canary-\(getpid())"
    writeFile(canary, "host secret")
    _ = payload(sandbox, """
      import os
      open("/mnt/out.txt", "w").write("result\\n")
      open("/mnt/big", "wb").write(b"x" * 5000)
      os.symlink("\(canary)", "/mnt/link")
      os.mkdir("/mnt/sub")
      os.symlink("/etc", "/mnt/sub/up")
      os.mkfifo("/mnt/fifo")
      os.mkdir("/mnt/dir")
      """, mount: mount.path)
    if getuid() == 0 { shell("mknod '\(mount.path)/dev' c 1 3") }  // a /dev/null twin, made on the host by the test
    let good = try? mount.readOutput("out.txt")
    t.expect(good?.bytes == Array("result\n".utf8) && good?.truncated == false, "outputs: a regular file the payload left is read")
    let big = try? mount.readOutput("big", limit: 100)
    t.expect(big?.bytes.count == 100 && big?.truncated == true && big?.size == 5000, "outputs: reading stops at the limit and says so")
    let started = ContinuousClock.now
    var refused: [String] = []
    for path in ["link", "sub/up/passwd", "fifo", "dir", "../x", "/etc/passwd", "missing"] + (getuid() == 0 ? ["dev"] : []) {
      do throws(SandboxError) {
        _ = try mount.readOutput(path)
      } catch {
        if case .outputUnreadable = error { refused.append(path) }
      }
    }
    t.expect(
      refused.count == (getuid() == 0 ? 8 : 7) && ContinuousClock.now - started < .seconds(2),
      "outputs: symlinks (last or inner), FIFOs, directories, devices, escapes and missing files are refused without blocking", "\(refused)")
    mount.remove()
    t.expect(Sandbox.Sys.readSmallFile(canary) == "host secret", "outputs: ... and removing the mount dir leaves the symlink's target alone")
    unlink(canary)
  }

  // 9. The helper removes whatever the payload leaves: mode-000 dirs, symlinks, FIFOs, depth.
  if let mount = freshMount(&t) {
    let canary = "\(temp)/sandbox-remove-canary-\(getpid())"
    shell("mkdir -p '\(canary)' && touch '\(canary)/keep'")
    _ = payload(sandbox, """
      import os
      os.makedirs("/mnt/a/b/c")
      open("/mnt/a/b/c/f", "w").close()
      os.chmod("/mnt/a/b/c", 0)
      os.chmod("/mnt/a", 0)
      os.symlink("\(canary)", "/mnt/outside")
      os.mkfifo("/mnt/fifo")
      os.chdir("/mnt")
      for i in range(300):
          os.mkdir("n")
          os.chdir("n")
      os.chmod("/mnt", 0o500)
      """, mount: mount.path)
    let parent = mount.parent
    mount.remove()
    t.expect(!Sandbox.Sys.exists(parent) && Sandbox.Sys.exists("\(canary)/keep"), "mount dir helper: removes mode-000 dirs, FIFOs, 300 levels and symlinks (never their targets)")
    shell("rm -rf '\(canary)'")
    let fresh = try? SandboxMountDirectory()
    t.expect(sizeAndMode(fresh?.parent ?? "/")?.mode == 0o700, "mount dir helper: the private parent is mode 0700")
    fresh?.remove()
  }

  // 10. Zero or negative timeouts, and a Task cancelled before run: nothing is spawned.
  if let mount = freshMount(&t) {
    for timeout in [Duration.zero, .milliseconds(-5)] {
      t.expectError("lifecycle: a timeout of \(timeout) is an invalid value and spawns nothing", { if case .invalidTimeout = $0 { true } else { false } }) {
        () throws(SandboxError) in _ = try sandbox.run(.code("open('/mnt/ran', 'w')"), mountDirectory: mount.path, timeout: timeout)
      }
    }
    let path = mount.path
    let task = Task { () async -> SandboxError? in
      withUnsafeCurrentTask { $0?.cancel() }
      do throws(SandboxError) {
        _ = try await sandbox.run(.code("open('/mnt/ran', 'w')"), mountDirectory: path, timeout: .seconds(10))
        return nil
      } catch {
        return error
      }
    }
    let error = await task.value
    t.expect(error == .runCancelled, "lifecycle: a Task cancelled before run gets runCancelled", error?.description ?? "no error")
    t.expect(!Sandbox.Sys.exists("\(mount.path)/ran"), "lifecycle: ... and neither spawned anything")
    // A tiny timeout ends the run before its payload could start: a result, and nothing ran.
    var early = 0
    for _ in 0..<20 {
      let result = payload(sandbox, "open('/mnt/ran', 'w')", mount: mount.path, timeout: .microseconds(200))
      if result?.timedOut == true && result?.stdout.isEmpty == true { early += 1 }
    }
    t.expect(early == 20 && !Sandbox.Sys.exists("\(mount.path)/ran"), "lifecycle: a 0.2 ms timeout times out every run before the payload starts", "\(early) of 20")
    mount.remove()
  }

  // 11. A host that ignores SIGCHLD: no hang, exit statuses from bwrap's report, timeouts honoured.
  let previous = signal(SIGCHLD, SIG_IGN)
  let exited = payload(sandbox, "import sys; sys.exit(7)")
  let started = ContinuousClock.now
  let slow = payload(sandbox, "import time; time.sleep(30)", timeout: .milliseconds(500))
  signal(SIGCHLD, previous)
  t.expect(exited?.returnCode == 7, "lifecycle: with SIGCHLD ignored, the exit status still comes back", "\(String(describing: exited?.returnCode))")
  t.expect(slow?.timedOut == true && ContinuousClock.now - started < .seconds(5), "lifecycle: with SIGCHLD ignored, a timeout still ends the run")

  // 11b. A payload that keeps both pipes full cannot starve the host's timers.
  let floodStarted = ContinuousClock.now
  let flood = payload(
    sandbox,
    "import os\nif os.fork() == 0:\n    while True: os.write(2, b'e' * 65536)\nwhile True: os.write(1, b'o' * 65536)",
    timeout: .milliseconds(800))
  let floodTook = ContinuousClock.now - floodStarted
  t.expect(
    flood?.timedOut == true && floodTook < .seconds(6),
    "lifecycle: a payload flooding stdout and stderr without pause still ends at its time limit",
    "timedOut \(String(describing: flood?.timedOut)) after \(floodTook)")

  // 12. Limits never apply to bwrap's own setup: a file-size limit of 0 or 1 byte still starts.
  for bytes in [0, 1] {
    let tiny = try? Sandbox(config: SandboxConfig(venvPath: venv, appArmor: .disabled, limits: SandboxLimits(fileSizeBytes: bytes)))
    var started = 0
    for _ in 0..<20 {
      if let run = tiny.flatMap({ payload($0, "import resource\nprint(resource.getrlimit(resource.RLIMIT_FSIZE)[0])") }),
        run.stdoutText == "\(bytes)\n"
      {
        started += 1
      }
    }
    t.expect(started == 20, "lifecycle: with RLIMIT_FSIZE \(bytes) byte(s) every run starts (bwrap's setup runs without the payload's limits)", "\(started) of 20")
  }

  // 13. remove() on a filesystem whose directory offsets are positions (ramfs; tmpfs before 6.6):
  //     removing entries shifts the rest, so the second pass from the start must really start there.
  if getuid() != 0 {
    t.skip("lifecycle: remove() empties a mount dir on ramfs", "mounting a ramfs needs root")
  } else {
    let base = "\(temp)/sandbox-ramfs-\(getpid())"
    shell("mkdir -p '\(base)' && mount -t ramfs -o mode=0755 ramfs '\(base)'")
    let saved = Sandbox.Sys.environmentValue("TMPDIR")
    setenv("TMPDIR", base, 1)
    let onRamfs = try? SandboxMountDirectory(prefix: "sandbox-ramfs-")
    if let saved { setenv("TMPDIR", saved, 1) } else { unsetenv("TMPDIR") }
    if let mount = t.require(onRamfs, "lifecycle: a mount dir on ramfs") {
      // it sleeps past the disk watch's first look (50 ms): ramfs reports no sizes at all, which
      // must not read as a full disk
      let made = payload(sandbox, "import os, time\nfor i in range(1000): open('/mnt/f%d' % i, 'w').close()\nos.makedirs('/mnt/d/e')\ntime.sleep(0.3)", mount: mount.path)
      let parent = Sandbox.Sys.parentDirectory(mount.path)
      mount.remove()
      t.expect(
        made?.changedPaths.count == 1_000 && made?.limitHit == nil && !Sandbox.Sys.exists(parent),
        "lifecycle: remove() empties a mount dir on ramfs (1,000 files and a subtree) and its parent",
        shellOutput("ls '\(parent)' 2>&1 | wc -l"))
    }
    shell("umount '\(base)' && rmdir '\(base)'")
  }

  // 14. A long-lived host: runs leak neither descriptors nor memory (sync and async alike).
  func openDescriptors() -> Int { Int(Sandbox.Sys.trimmed(shellOutput("ls /proc/\(getpid())/fd | wc -l"))) ?? -1 }
  func residentKiB() -> Int {
    let line = (Sandbox.Sys.readSmallFile("/proc/self/status") ?? "").split(separator: "\n").first { $0.hasPrefix("VmRSS:") }
    return Int(line?.split(separator: " ").dropFirst().first ?? "") ?? -1
  }
  for _ in 0..<10 { _ = payload(sandbox, "pass") }  // warm up: caches, the reaper, thread stacks
  _ = try? await sandbox.run(.code("pass"), timeout: .seconds(10))
  let descriptorsBefore = openDescriptors()
  let memoryBefore = residentKiB()
  for _ in 0..<100 {
    _ = payload(sandbox, "pass")
    _ = try? await sandbox.run(.code("pass"), timeout: .seconds(10))
  }
  let descriptorsAfter = openDescriptors()
  let memoryAfter = residentKiB()
  t.expect(
    // A leak per run would show 100 or 200 descriptors; the runtime may open one or two lazily.
    descriptorsAfter <= descriptorsBefore + 2 && memoryAfter - memoryBefore < 4_096,
    "lifecycle: 200 runs (half async) leave no descriptor and under 4 MiB of memory behind",
    "descriptors \(descriptorsBefore) -> \(descriptorsAfter), RSS \(memoryBefore) -> \(memoryAfter) KiB")
}

/// `unit_tests --host-death-victim VENV MOUNT_BASE TAG COUNT CODE PROFILE|-`: starts COUNT runs
/// of CODE at once (limits: 77 CPU seconds, 77 open files; under the AppArmor PROFILE unless
/// "-") and waits; tests/host_death_test.py kills this process at a random moment and checks
/// what is left.
func runHostDeathVictim(_ arguments: [String]) async -> Never {
  guard arguments.count == 8, let count = Int(arguments[5]) else {
    print("usage: unit_tests --host-death-victim VENV MOUNT_BASE TAG COUNT CODE PROFILE|-")
    exit(2)
  }
  let (venv, base, tag, code) = (arguments[2], arguments[3], arguments[4], arguments[6])
  let appArmor: SandboxConfig.AppArmor = arguments[7] == "-" ? .disabled : .profile(arguments[7])
  guard let sandbox = try? Sandbox(config: SandboxConfig(
    venvPath: venv, appArmor: appArmor, limits: SandboxLimits(cpuSeconds: 77, openFiles: 77)))
  else { exit(3) }
  await withTaskGroup(of: Void.self) { group in
    for index in 0..<count {
      let directory = "\(base)/run\(index)"
      mkdir(directory, 0o755)
      group.addTask {
        _ = try? await sandbox.run(
          .code(code), mountDirectory: directory, timeout: .milliseconds(2500), environment: ["SANDBOX_DEATH_TAG": tag])
      }
    }
  }
  exit(0)
}
