// Unit, golden and end-to-end tests of the sandbox library.
//
// Built with: swiftc -parse-as-library -D SANDBOX_LIBRARY sandbox.swift tests/unit_tests.swift tests/lifecycle_tests.swift
// Run with:   SANDBOX_TEST_VENV=/path/to/venv tests/build/unit_tests
// Ends with the line "N passed, N failed, N skipped".

import Glibc

extension String {
  /// The text without white space at either end (the tests' own: sandbox.swift's is fileprivate).
  var trimmingWhitespace: String {
    var text = Substring(self)
    while let first = text.first, first.isWhitespace { text.removeFirst() }
    while let last = text.last, last.isWhitespace { text.removeLast() }
    return String(text)
  }
}

struct Tally {
  var passed = 0
  var failed = 0
  var skipped = 0

  mutating func expect(_ condition: Bool, _ name: String, _ detail: @autoclosure () -> String = "") {
    if condition {
      passed += 1
      print("ok - \(name)")
    } else {
      failed += 1
      print("not ok - \(name)\(detail().isEmpty ? "" : " # \(detail())")")
    }
  }

  /// The value a test's setup produced; when there is none, a failure (never a silent skip of
  /// the checks that need it).
  mutating func require<T>(_ value: T?, _ name: String, _ detail: @autoclosure () -> String = "") -> T? {
    if value == nil { expect(false, name, detail()) }
    return value
  }

  mutating func skip(_ name: String, _ why: String) {
    skipped += 1
    print("ok - \(name) # SKIP \(why)")
  }

  /// Expects `body` to throw exactly `expected` (compared by case and payload).
  mutating func expectError(_ name: String, _ expected: (SandboxError) -> Bool, _ body: () throws(SandboxError) -> Void) {
    do throws(SandboxError) {
      try body()
      expect(false, name, "no error was thrown")
    } catch {
      expect(expected(error), name, "threw: \(error.description)")
    }
  }
}

func shell(_ command: String) {
  _ = command.withCString { system($0) }
}

func shellOutput(_ command: String) -> String {
  guard let pipe = popen(command, "r") else { return "" }
  defer { pclose(pipe) }
  var bytes: [UInt8] = []
  var buffer = [UInt8](repeating: 0, count: 65536)
  while true {
    let count = fread(&buffer, 1, buffer.count, pipe)
    if count <= 0 { break }
    bytes += buffer[0..<count]
  }
  return String(decoding: bytes, as: UTF8.self)
}

extension Sandbox.Changes.ChangeList {
  /// The lists as text, for comparing with literals (the names in these tests are ASCII).
  var changedText: [String] { changed.map { String(decoding: $0, as: UTF8.self) } }
  var deletedText: [String] { deleted.map { String(decoding: $0, as: UTF8.self) } }
}

func writeFile(_ path: String, _ text: String) {
  let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
  guard fd >= 0 else { return }
  Sandbox.Sys.writeAll(fd, Array(text.utf8))
  close(fd)
}

// MARK: - Golden: the bwrap command line

let goldenLayout = Sandbox.Preflight.HostLayout(
  systemMounts: [.readOnly("/usr"), .symlink(target: "usr/bin", sandboxPath: "/bin"), .symlink(target: "usr/lib", sandboxPath: "/lib")],
  procMasks: [.maskFile("/proc/kcore"), .maskDirectory("/proc/acpi")],
  etcMounts: [.readOnly("/etc/passwd"), .readOnly("/etc/group")],
  bootstrap: Sandbox.Bwrap.Gate(shell: "/usr/bin/dash", envCommand: nil))
/// A pyenv base interpreter (--enable-shared) as `BaseInterpreter.find` describes it: three binds, two links.
let pyenvBase = Sandbox.Preflight.BaseInterpreter(
  prefix: "/home/u/.pyenv/versions/3.12.1",
  binds: ["/home/u/.pyenv/versions/3.12.1/bin/python3.12", "/home/u/.pyenv/versions/3.12.1/lib/python3.12", "/home/u/.pyenv/versions/3.12.1/lib/libpython3.12.so.1.0"],
  links: [.init(path: "/home/u/.pyenv/versions/3.12.1/bin/python3", target: "python3.12"), .init(path: "/home/u/.pyenv/versions/3.12.1/lib/libpython3.12.so", target: "libpython3.12.so.1.0")],
  cover: "/home/u/.pyenv/versions/3.12.1")
let goldenVenv = Sandbox.Preflight.VenvLayout(root: "/opt/venv", base: pyenvBase)

func goldenArguments(network: Bool) -> [String] {
  var expected = ["--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
  if !network { expected.append("--unshare-net") }
  expected += [
    "--disable-userns", "--assert-userns-disabled", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
    "--hostname", "sandbox", "--clearenv", "--setenv", "HOME", "/tmp", "--setenv", "PATH", "/opt/venv/bin:/usr/bin",
    "--json-status-fd", "8", "--seccomp", "9",
    "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
    "--ro-bind", "/etc/passwd", "/etc/passwd", "--ro-bind", "/etc/group", "/etc/group",
    "--ro-bind-data", "4", "/etc/resolv.conf", "--ro-bind-data", "5", "/etc/hosts",
    "--proc", "/proc", "--ro-bind", "/dev/null", "/proc/kcore", "--tmpfs", "/proc/acpi", "--remount-ro", "/proc/acpi",
    "--remount-ro", "/proc", "--dev", "/dev", "--size", "1048576", "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
    "--size", "1048576", "--tmpfs", "/tmp", "--bind-fd", "6", "/mnt", "--ro-bind", "/opt/venv", "/opt/venv",
    "--size", "65536", "--tmpfs", "/home/u/.pyenv/versions/3.12.1",
    "--ro-bind", "/home/u/.pyenv/versions/3.12.1/bin/python3.12", "/home/u/.pyenv/versions/3.12.1/bin/python3.12",
    "--ro-bind", "/home/u/.pyenv/versions/3.12.1/lib/python3.12", "/home/u/.pyenv/versions/3.12.1/lib/python3.12",
    "--ro-bind", "/home/u/.pyenv/versions/3.12.1/lib/libpython3.12.so.1.0", "/home/u/.pyenv/versions/3.12.1/lib/libpython3.12.so.1.0",
    "--symlink", "python3.12", "/home/u/.pyenv/versions/3.12.1/bin/python3",
    "--symlink", "libpython3.12.so.1.0", "/home/u/.pyenv/versions/3.12.1/lib/libpython3.12.so",
    "--remount-ro", "/home/u/.pyenv/versions/3.12.1",
    "--ro-bind-data", "7", "/run/sandbox/main.py", "--remount-ro", "/",
    "--chdir", "/mnt", "--", "/usr/bin/dash", "-c",
    #"printf R >&3 && read -r go <&3 && [ "$go" = GO ] && exec "$0" "$@" 3<&-"#,
    "/opt/venv/bin/python", "/run/sandbox/main.py",
  ]
  return expected
}

func testGolden(_ t: inout Tally) {
  for network in [false, true] {
    let plan = Sandbox.Bwrap.RunPlan(
      host: goldenLayout, venv: goldenVenv, networkEnabled: network, mountDirectoryFD: 42,
      payload: .code("print(1)"), environment: [("HOME", "/tmp"), ("PATH", "/opt/venv/bin:/usr/bin")],
      tmpfsBytes: 1 << 20, seccompProgram: [1, 2, 3, 4, 5, 6, 7, 8])
    let invocation = Sandbox.Bwrap.makeInvocation(plan)
    let expected = goldenArguments(network: network)
    let firstDifference = zip(invocation.arguments, expected).enumerated().first { $0.element.0 != $0.element.1 }
    t.expect(
      invocation.arguments == expected, "golden: bwrap argv, network \(network ? "on" : "off")",
      "first difference at \(firstDifference.map { "\($0.offset): got \($0.element.0), want \($0.element.1)" } ?? "length \(invocation.arguments.count) vs \(expected.count)")")
    // Inputs line up with the fds named on the command line: 3 the gate's channel, 4 resolv.conf,
    // 5 hosts, 6 mount dir, 7 code, 8 bwrap's status report, 9 seccomp.
    var shape: [String] = []
    for input in invocation.inputs {
      switch input {
      case .bytes(let bytes): shape.append(String(decoding: bytes.prefix(9), as: UTF8.self))
      case .descriptor(let fd): shape.append("fd \(fd)")
      case .report: shape.append("report")
      case .channel: shape.append("channel")
      }
    }
    t.expect(
      shape == ["channel", "# Written", "127.0.0.1", "fd 42", "print(1)", "report", "\u{1}\u{2}\u{3}\u{4}\u{5}\u{6}\u{7}\u{8}"],
      "golden: child fds 3-9 carry the gate's channel, resolv.conf, hosts, mount dir, code, bwrap's report, seccomp", "\(shape)")
  }
  let script = Sandbox.Bwrap.makeInvocation(
    Sandbox.Bwrap.RunPlan(host: goldenLayout, venv: Sandbox.Preflight.VenvLayout(root: "/v", base: nil), networkEnabled: true, mountDirectoryFD: nil,
      payload: .script(sandboxPath: "/mnt/job.py"), environment: [], tmpfsBytes: 4096, seccompProgram: Sandbox.Seccomp.Filter.allowAll))
  t.expect(script.arguments.suffix(2) == ["/v/bin/python", "/mnt/job.py"], "golden: a script runs by its sandbox path, behind the gate")
  t.expect(
    !script.arguments.contains("--bind-fd") && script.arguments.joined(separator: " ").contains("--size 4096 --tmpfs /mnt")
      && script.arguments.contains("--seccomp"),
    "golden: without a mount dir, /mnt is a sized tmpfs; a relaxed seccomp layer still loads a (permissive) filter, pid 1's armed sign")
  let bash = Sandbox.Bwrap.Gate(shell: "/bin/sh", envCommand: "/usr/bin/env").command(python: "/v/bin/python", script: "/mnt/a.py")
  t.expect(
    bash == ["/bin/sh", "-c", #"printf R >&3 && read -r go <&3 && [ "$go" = GO ] && exec /usr/bin/env -u SHLVL "$0" "$@" 3<&-"#, "/v/bin/python", "/mnt/a.py"],
    "golden: without dash, the gate runs /bin/sh and takes bash's SHLVL out again", "\(bash)")
  t.expect(!script.arguments.contains("--unshare-net"), "golden: network on shares the host network namespace")

  // DECISIONS 8: nothing is mounted beneath the host-writable bind at /mnt (bwrap's setup would
  // walk paths the payload of an earlier run controls). Every variant, on the golden and this host's layout.
  var beneath: [String] = []
  var unknown: Set<String> = []
  for host in [goldenLayout, Sandbox.Preflight.HostLayout.probe()] {
    for mountDirectoryFD in [Int32(42), nil] {
      for payload in [SandboxPayload.code("1"), .script(sandboxPath: "/mnt/a/b.py")] {
        for network in [true, false] {
          let arguments = Sandbox.Bwrap.makeInvocation(Sandbox.Bwrap.RunPlan(
            host: host, venv: goldenVenv, networkEnabled: network, mountDirectoryFD: mountDirectoryFD, payload: payload,
            environment: [], tmpfsBytes: 1 << 20, seccompProgram: [])).arguments
          let (destinations, unknownOptions) = bwrapDestinations(arguments)
          beneath += destinations.filter { $0.hasPrefix("/mnt/") }
          unknown.formUnion(unknownOptions)
        }
      }
    }
  }
  t.expect(unknown.isEmpty, "golden: every bwrap option the builder emits is known to the destination check", "\(unknown.sorted())")
  t.expect(beneath.isEmpty, "golden: no bwrap destination, --dir or --file lies beneath /mnt (DECISIONS 8)", "\(beneath)")
}

/// The paths bwrap mounts or creates, from its own option table (an independent reading of
/// bwrap(1)): option → (values it takes, index of the destination among them, or nil).
func bwrapDestinations(_ arguments: [String]) -> (destinations: [String], unknown: [String]) {
  let options: [String: (count: Int, destination: Int?)] = [
    "--bind": (2, 1), "--bind-try": (2, 1), "--ro-bind": (2, 1), "--ro-bind-try": (2, 1), "--dev-bind": (2, 1),
    "--dev-bind-try": (2, 1), "--bind-fd": (2, 1), "--ro-bind-fd": (2, 1), "--bind-data": (2, 1), "--ro-bind-data": (2, 1),
    "--file": (2, 1), "--symlink": (2, 1), "--chmod": (2, 1), "--tmpfs": (1, 0), "--dir": (1, 0), "--dev": (1, 0),
    "--proc": (1, 0), "--mqueue": (1, 0), "--remount-ro": (1, 0), "--overlay": (1, 0), "--tmp-overlay": (1, 0),
    "--ro-overlay": (1, 0),
    "--size": (1, nil), "--perms": (1, nil), "--hostname": (1, nil), "--setenv": (2, nil), "--unsetenv": (1, nil),
    "--chdir": (1, nil), "--cap-drop": (1, nil), "--cap-add": (1, nil), "--seccomp": (1, nil), "--add-seccomp-fd": (1, nil),
    "--json-status-fd": (1, nil), "--info-fd": (1, nil), "--block-fd": (1, nil), "--userns-block-fd": (1, nil),
    "--sync-fd": (1, nil), "--lock-file": (1, nil), "--uid": (1, nil), "--gid": (1, nil), "--args": (1, nil),
    "--userns": (1, nil), "--userns2": (1, nil), "--pidns": (1, nil), "--exec-label": (1, nil), "--file-label": (1, nil),
    "--overlay-src": (1, nil), "--argv0": (1, nil),
  ]
  var destinations: [String] = []
  var unknown: [String] = []
  var index = 0
  while index < arguments.count {
    let argument = arguments[index]
    if argument == "--" { break }  // the command follows
    index += 1
    guard argument.hasPrefix("--") else { unknown.append(argument); continue }
    guard let (count, destination) = options[argument] else {
      if !argument.hasPrefix("--unshare-") && !["--disable-userns", "--assert-userns-disabled", "--die-with-parent",
        "--new-session", "--clearenv", "--as-pid-1", "--share-net"].contains(argument) { unknown.append(argument) }
      continue
    }
    if let destination, index + destination < arguments.count { destinations.append(arguments[index + destination]) }
    index += count
  }
  return (destinations, unknown)
}

// MARK: - Golden: the seccomp program, decoded back into rules by a small BPF interpreter

/// Runs a classic-BPF seccomp program on one system call; returns the action it takes.
func evaluateFilter(_ program: [Sandbox.Seccomp.Instruction], arch: UInt32, number: UInt32, args: [UInt64] = []) -> UInt32 {
  var accumulator: UInt32 = 0
  var pc = 0
  func word(at offset: UInt32) -> UInt32 {
    switch offset {
    case 0: return number
    case 4: return arch
    default:
      let index = Int(offset - 16) / 8
      let value = index < args.count ? args[index] : 0
      return offset % 8 == 0 ? UInt32(truncatingIfNeeded: value) : UInt32(truncatingIfNeeded: value >> 32)
    }
  }
  var steps = 0
  while pc < program.count && steps < 10_000 {
    steps += 1
    let instruction = program[pc]
    switch instruction.code {
    case 0x20: accumulator = word(at: instruction.k); pc += 1
    case 0x15: pc += 1 + Int(accumulator == instruction.k ? instruction.jumpIfTrue : instruction.jumpIfFalse)
    case 0x35: pc += 1 + Int(accumulator >= instruction.k ? instruction.jumpIfTrue : instruction.jumpIfFalse)
    case 0x45: pc += 1 + Int(accumulator & instruction.k != 0 ? instruction.jumpIfTrue : instruction.jumpIfFalse)
    case 0x06: return instruction.k
    default: return 0xDEAD
    }
  }
  return 0xDEAD  // ran off the end: an invalid program
}

func testSeccomp(_ t: inout Tally) {
  for architecture in Sandbox.Seccomp.Filter.Architecture.allCases {
    for network in [true, false] {
      let label = "seccomp \(architecture.rawValue), network \(network ? "on" : "off")"
      let program = Sandbox.Seccomp.Filter.makeProgram(for: architecture, networkEnabled: network)
      let arch = architecture.auditArch
      func action(_ number: UInt32?, _ args: [UInt64] = []) -> UInt32 {
        evaluateFilter(program, arch: arch, number: number ?? 0xFFFF, args: args)
      }
      func rule(_ name: String) -> UInt32? {
        Sandbox.Seccomp.Filter.argumentRules(networkEnabled: network).first { $0.call.name == name }?.call.number(architecture)
      }
      t.expect(program.count < 4096 && program.allSatisfy { [0x20, 0x15, 0x35, 0x45, 0x06].contains($0.code) }, "\(label): a valid program (\(program.count) instructions)")
      // Decode: sweep every call number with zeroed arguments and collect what is not allowed.
      var denied: [UInt32: UInt32] = [:]
      for number in UInt32(0)..<600 where action(number) != Sandbox.Seccomp.Filter.allow { denied[number] = action(number) }
      var expected: [UInt32: UInt32] = [:]
      for rule in Sandbox.Seccomp.Filter.deniedCalls { if let number = rule.number(architecture) { expected[number] = Sandbox.Seccomp.Filter.fail(rule.errno) } }
      expected[Sandbox.Seccomp.Filter.socketCall.number(architecture)!] = Sandbox.Seccomp.Filter.fail(EAFNOSUPPORT)  // socket(AF_UNSPEC)
      expected[rule("ioprio_set")!] = Sandbox.Seccomp.Filter.fail(EPERM)  // ioprio_set(0, 0): "which" 0 is no IOPRIO_WHO_PROCESS
      for number in (architecture.highestReviewed + 1)..<600 { expected[number] = Sandbox.Seccomp.Filter.fail(ENOSYS) }
      t.expect(denied == expected, "\(label): decoded, exactly the denied calls fail, each with its errno, and every number above \(architecture.highestReviewed) gets ENOSYS",
        "extra: \(denied.keys.filter { expected[$0] == nil }.sorted()), missing: \(expected.keys.filter { denied[$0] == nil }.sorted())")
      t.expect(action(438) == Sandbox.Seccomp.Filter.fail(EPERM) && action(467) == Sandbox.Seccomp.Filter.fail(ENOSYS), "\(label): pidfd_getfd (EPERM) and open_tree_attr (ENOSYS) are refused")
      t.expect(action(452) == Sandbox.Seccomp.Filter.allow && action(462) == Sandbox.Seccomp.Filter.allow && action(469) == Sandbox.Seccomp.Filter.allow, "\(label): fchmodat2 and mseal (glibc 2.41) and file_setattr, the highest reviewed call, are allowed")
      t.expect(action(470) == Sandbox.Seccomp.Filter.fail(ENOSYS) && action(0x3FFF_FFFF) == Sandbox.Seccomp.Filter.fail(ENOSYS), "\(label): a call newer than the table gets ENOSYS")
      t.expect(evaluateFilter(program, arch: 0x4000_0003, number: 0) == Sandbox.Seccomp.Filter.killProcess, "\(label): an ia32 call is killed")
      t.expect(evaluateFilter(program, arch: 0xC000_0028, number: 0) == Sandbox.Seccomp.Filter.killProcess, "\(label): another architecture's call is killed")
      if architecture == .x86_64 {
        t.expect(action(0x4000_0000 + 1) == Sandbox.Seccomp.Filter.fail(ENOSYS), "\(label): an x32 call number is refused")
      }
      let socket = Sandbox.Seccomp.Filter.socketCall.number(architecture)
      for (family, allowed) in [(1, true), (16, true), (2, true), (10, true), (17, false), (40, false), (0x1_0000_0001, true)] as [(UInt64, Bool)] {
        t.expect((action(socket, [family]) == Sandbox.Seccomp.Filter.allow) == allowed, "\(label): socket family \(family) \(allowed ? "allowed" : "refused")")
      }
      let clone = rule("clone")
      t.expect(action(clone, [0x11]) == Sandbox.Seccomp.Filter.allow && action(clone, [0x3D0F00]) == Sandbox.Seccomp.Filter.allow, "\(label): clone for fork and threads is allowed")
      t.expect(action(clone, [0x1000_0011]) == Sandbox.Seccomp.Filter.fail(EPERM) && action(clone, [0x4000_0000]) == Sandbox.Seccomp.Filter.fail(EPERM), "\(label): clone with CLONE_NEWUSER or CLONE_NEWNET is refused")
      let ioctl = rule("ioctl")
      t.expect(action(ioctl, [0, 0x5401]) == Sandbox.Seccomp.Filter.allow, "\(label): ioctl TCGETS is allowed")
      t.expect(
        action(ioctl, [0, 0x5412]) == Sandbox.Seccomp.Filter.fail(EPERM) && action(ioctl, [0, 0xDEAD_0000_5412]) == Sandbox.Seccomp.Filter.fail(EPERM)
          && action(ioctl, [0, 0x541C]) == Sandbox.Seccomp.Filter.fail(EPERM),
        "\(label): ioctl TIOCSTI (also with high bits set) and TIOCLINUX are refused")
      let personality = rule("personality")
      t.expect(action(personality, [0]) == Sandbox.Seccomp.Filter.allow && action(personality, [0xFFFF_FFFF]) == Sandbox.Seccomp.Filter.allow && action(personality, [0x0040000]) == Sandbox.Seccomp.Filter.fail(EPERM), "\(label): personality only queries or sets PER_LINUX")
      for name in ["sched_setscheduler", "sched_setattr", "sched_setaffinity"] {
        let number = rule(name)
        t.expect(
          action(number, [0, 5]) == Sandbox.Seccomp.Filter.allow && action(number, [1, 5]) == Sandbox.Seccomp.Filter.fail(EPERM)
            && action(number, [0x1_0000_0000]) == Sandbox.Seccomp.Filter.allow && action(number, [2]) == Sandbox.Seccomp.Filter.fail(EPERM),
          "\(label): \(name) only for the caller itself (pid 0), never for pid 1 or another")
      }
      let param = rule("sched_setparam")
      t.expect(action(param, [0, 5]) == Sandbox.Seccomp.Filter.allow && action(param, [1, 5]) == Sandbox.Seccomp.Filter.fail(EPERM), "\(label): sched_setparam only for the caller itself")
      let ioprio = rule("ioprio_set")
      t.expect(
        action(ioprio, [1, 0, 0x6000]) == Sandbox.Seccomp.Filter.allow && action(ioprio, [1, 1, 0x6000]) == Sandbox.Seccomp.Filter.fail(EPERM)
          && action(ioprio, [2, 0, 0x6000]) == Sandbox.Seccomp.Filter.fail(EPERM) && action(ioprio, [3, 0, 0x6000]) == Sandbox.Seccomp.Filter.fail(EPERM),
        "\(label): ioprio_set only IOPRIO_WHO_PROCESS of the caller (not pid 1, a process group or a user)")
      let prlimit = rule("prlimit64")
      t.expect(
        action(prlimit, [0, 7, 0x1000, 0]) == Sandbox.Seccomp.Filter.allow && action(prlimit, [1, 7, 0, 0x1000]) == Sandbox.Seccomp.Filter.allow
          && action(prlimit, [1, 7, 0x1000, 0]) == Sandbox.Seccomp.Filter.fail(EPERM),
        "\(label): prlimit64 sets only the caller's own limits; reading another's stays allowed")
      let priority = rule("setpriority")
      t.expect(
        action(priority, [0, 0, 10]) == Sandbox.Seccomp.Filter.allow && action(priority, [0, 1, 19]) == Sandbox.Seccomp.Filter.fail(EPERM)
          && action(priority, [1, 0, 19]) == Sandbox.Seccomp.Filter.fail(EPERM) && action(priority, [2, 0, 19]) == Sandbox.Seccomp.Filter.fail(EPERM),
        "\(label): setpriority only PRIO_PROCESS of the caller (not of pid 1, a process group or a user)")
    }
  }
  let program = Sandbox.Seccomp.Filter.makeProgram(for: .x86_64, networkEnabled: true)
  let bytes = Sandbox.Seccomp.Filter.encode(program)
  var decoded: [Sandbox.Seccomp.Instruction] = []
  for start in stride(from: 0, to: bytes.count, by: 8) {
    let b = bytes[start..<start + 8].map(UInt32.init)
    decoded.append(Sandbox.Seccomp.Instruction(code: UInt16(b[0] | b[1] << 8), jumpIfTrue: UInt8(b[2]), jumpIfFalse: UInt8(b[3]), k: b[4] | b[5] << 8 | b[6] << 16 | b[7] << 24))
  }
  t.expect(bytes.count == program.count * 8 && decoded == program, "seccomp: the encoded bytes decode back to the program")
  t.expect(evaluateFilter([.ret(Sandbox.Seccomp.Filter.allow)], arch: 0, number: 101) == Sandbox.Seccomp.Filter.allow && Sandbox.Seccomp.Filter.allowAll.count == 8, "seccomp: the relaxed layer's program allows everything")
}

// MARK: - Golden: the AppArmor profile

/// Compares `text` with tests/golden/NAME; SANDBOX_UPDATE_GOLDEN=1 rewrites the file instead.
func compareGolden(_ t: inout Tally, _ name: String, _ text: String) {
  let directory = Sandbox.Sys.environmentValue("SANDBOX_GOLDEN_DIR") ?? "tests/golden"
  let path = "\(directory)/\(name)"
  if Sandbox.Sys.environmentValue("SANDBOX_UPDATE_GOLDEN") == "1" { writeFile(path, text) }
  guard Sandbox.Sys.isDirectory(directory) else { return t.skip("golden: \(name)", "no golden directory at \(directory) (run from the project root or set SANDBOX_GOLDEN_DIR)") }
  let expected = Sandbox.Sys.readSmallFile(path) ?? ""
  t.expect(text == expected, "golden: \(name)", Sandbox.AppArmorProfile.makeUnifiedDiff(old: expected, new: text, oldName: path, newName: "generated").split(separator: "\n").prefix(12).joined(separator: " | "))
}

func testAppArmor(_ t: inout Tally, temp: String) {
  let debianVenv = Sandbox.Preflight.VenvLayout(root: "/srv/app/venv", base: nil)
  var pyenvVenv = Sandbox.Preflight.VenvLayout(root: "/home/u/project/.venv", base: pyenvBase)
  pyenvVenv.extraDirectories = ["/home/u/project/src"]  // --ro-dir
  let layout = Sandbox.Preflight.HostLayout(
    systemMounts: [.readOnly("/usr"), .symlink(target: "usr/bin", sandboxPath: "/bin"), .symlink(target: "usr/lib", sandboxPath: "/lib")],
    procMasks: [.maskFile("/proc/kcore"), .maskDirectory("/proc/acpi")],
    etcMounts: [.readOnly("/etc/passwd"), .readOnly("/etc/group"), .readOnly("/etc/ssl/certs")])
  let directories: Set<String> = ["/usr", "/etc/ssl/certs", "/home/u/.pyenv/versions/3.12.1/lib/python3.12", "/home/u/project/src"]
  let abi3 = Sandbox.AppArmorProfile.Support(parserVersion: "3.0.8", kernelMediatesUserns: false)
  let abi4 = Sandbox.AppArmorProfile.Support(parserVersion: "4.0.1", kernelMediatesUserns: true)
  let cases: [(String, Sandbox.Preflight.VenvLayout, String, Sandbox.AppArmorProfile.Support)] = [
    ("apparmor-debian-abi3.profile", debianVenv, "/usr/bin/python3.11", abi3),
    ("apparmor-pyenv-abi3.profile", pyenvVenv, "/home/u/.pyenv/versions/3.12.1/bin/python3.12", abi3),
    ("apparmor-debian-abi4.profile", debianVenv, "/usr/bin/python3.11", abi4),
    ("apparmor-pyenv-abi4.profile", pyenvVenv, "/home/u/.pyenv/versions/3.12.1/bin/python3.12", abi4),
  ]
  for (file, venv, interpreter, support) in cases {
    guard let profile = try? Sandbox.AppArmorProfile.makeProfile(
      name: "sandbox_golden", venv: venv, interpreter: interpreter, host: layout, bwrapPath: "/usr/bin/bwrap",
      support: support, isDirectory: { directories.contains($0) })
    else { t.expect(false, "golden: \(file) generates"); continue }
    compareGolden(&t, file, profile)
    let abi4Lines = profile.contains("abi <abi/4.0>,") && profile.contains("\n  userns,\n")
    t.expect(support.usesABI4 ? abi4Lines : (profile.contains("abi <abi/3.0>,") && !profile.contains("userns,")), "apparmor: \(file) uses the ABI the parser and kernel support")
    t.expect(profile.contains("\n  \(interpreter) ix,\n") && profile.contains("flags=(attach_disconnected)"), "apparmor: \(file) runs the interpreter with ix, under attach_disconnected")
    // Every path of the Layout reaches the profile: what the sandbox shows is what the profile allows.
    let paths = Sandbox.Bwrap.Layout.self
    let accessRules = paths.exposedEtc.map { $0.directory ? "\($0.path)/{,**} r," : "\($0.path) r," }
      + paths.generatedEtc.map { "\($0.path) r," } + paths.deviceNodes.map { "/dev/\($0.name) \($0.access)," }
    let procDenial = profile.split(separator: "\n").first { $0.hasPrefix("  deny @{PROC}/{kcore") } ?? ""
    let names = procDenial.dropFirst("  deny @{PROC}/{".count).prefix { $0 != "}" }
    let denied = Set(names.split(separator: ",").map { "/proc/\($0)" })
    let unmasked = paths.maskedProcFiles.filter { !denied.contains($0) }
    t.expect(
      accessRules.allSatisfy { profile.contains("\n  \($0)\n") } && unmasked.isEmpty,
      "apparmor: \(file) has a rule for every /etc, /dev and masked /proc entry of the Layout", "\(unmasked)")
    // Every mount of the table has its rule: the profile is derived from the same table as the argv.
    for fd in [Int32(3), nil] {
      let mounts = Sandbox.Bwrap.makeInvocation(Sandbox.Bwrap.RunPlan(host: layout, venv: venv, networkEnabled: true, mountDirectoryFD: fd, payload: .code(""), environment: [], tmpfsBytes: 1, seccompProgram: [])).mounts
      let missing = mounts.filter { mount in
        guard let rules = try? Sandbox.AppArmorProfile.mountRules(mount, isDirectory: { directories.contains($0) }) else { return true }
        return !rules.allSatisfy { profile.contains("\n  \($0.rule)\n") }
      }
      t.expect(missing.isEmpty, "apparmor: \(file) has the rules of every mount (mount dir \(fd == nil ? "absent" : "present"))", "\(missing)")
    }
    let parser = Sandbox.Sys.findExecutable("apparmor_parser")
    if support.usesABI4 {
      t.skip("apparmor: \(file) passes apparmor_parser", "this host's parser may lack ABI 4.0 (the AppArmor VM loads such profiles)")
    } else if parser == nil {
      t.skip("apparmor: \(file) passes apparmor_parser", "apparmor_parser is not installed (.ci/run installs it)")
    } else if let parser {
      let path = "\(temp)/\(file)"
      writeFile(path, profile)
      let check = try? Sandbox.Spawner.runToCompletion(Sandbox.Spawner.Request(executable: parser, arguments: ["-Q", "-K", "-T", path], environment: [], timeout: .seconds(30)))
      t.expect(check?.status == .exited(0), "apparmor: \(file) passes apparmor_parser -Q -K -T", String(decoding: check?.stderr ?? [], as: UTF8.self))
      unlink(path)
    }
  }
  // Paths AppArmor treats as syntax are quoted or refused.
  t.expect((try? Sandbox.AppArmorProfile.quotedPath("/srv/my venv")) == "\"/srv/my venv\"", "apparmor: a path with a space is quoted")
  for bad in ["/srv/v*", "/srv/v?", "/srv/[v]", "/srv/{a,b}", "/srv/v^", "/srv/v\"", "/srv/a\nb", "/srv/a#b"] {
    t.expectError("apparmor: the path '\(Sandbox.Sys.printable(bad))' is refused", { if case .unsafeAppArmorPath = $0 { true } else { false } }) {
      () throws(SandboxError) in _ = try Sandbox.AppArmorProfile.quotedPath(bad)
    }
  }
  let diff = Sandbox.AppArmorProfile.makeUnifiedDiff(old: "a\nb\nc\nd\n", new: "a\nB\nc\nd\ne\n", oldName: "old", newName: "new")
  t.expect(diff == "--- old\n+++ new\n@@ -1,5 +1,6 @@\n a\n-b\n+B\n c\n d\n+e\n \n", "apparmor: the unified diff marks removed and added lines", diff)
  t.expect(Sandbox.AppArmorProfile.makeUnifiedDiff(old: "same\n", new: "same\n", oldName: "a", newName: "b") == "--- a\n+++ b\n", "apparmor: identical texts give an empty diff")
}

// MARK: - Validation

func testValidation(_ t: inout Tally, temp: String) {
  for name in ["my_sandbox_profile", "a-b.c", "X1"] {
    t.expect((try? Sandbox.Preflight.validateProfileName(name)) != nil, "profile name '\(name)' is accepted")
  }
  for name in ["a b", "a{b", "a\"b", "a\nb", "a/b", "", "..", "a}b", "a'b", "a,b", "a*b", String(repeating: "a", count: 200)] {
    t.expectError("profile name '\(Sandbox.Sys.printable(name))' is refused", { if case .invalidProfileName = $0 { true } else { false } }) {
      () throws(SandboxError) in try Sandbox.Preflight.validateProfileName(name)
    }
  }
  // Environment allowlist.
  do throws(SandboxError) {
    let environment = try Sandbox.Bwrap.makePayloadEnvironment(venvRoot: "/v", extra: ["MY_VAR": "1", "HOME": "/mnt"])
    let names = environment.map(\.0)
    t.expect(names == ["HOME", "LANG", "MY_VAR", "PATH", "TMPDIR"], "environment: allowlist plus the caller's variables", "\(names)")
    t.expect(environment.first { $0.0 == "HOME" }?.1 == "/mnt", "environment: the caller may override HOME")
    t.expect(environment.first { $0.0 == "PATH" }?.1.hasPrefix("/v/bin:") == true, "environment: PATH starts with the venv's bin")
  } catch {
    t.expect(false, "environment: valid variables", error.description)
  }
  for name in ["1A", "A=B", "A B", "", "Ä"] {
    t.expectError("environment: name '\(name)' is refused", { if case .invalidEnvironment = $0 { true } else { false } }) {
      () throws(SandboxError) in _ = try Sandbox.Bwrap.makePayloadEnvironment(venvRoot: "/v", extra: [name: "x"])
    }
  }
  t.expectError("environment: a NUL in a value is refused", { if case .invalidEnvironment = $0 { true } else { false } }) {
    () throws(SandboxError) in _ = try Sandbox.Bwrap.makePayloadEnvironment(venvRoot: "/v", extra: ["A": "x\u{0}y"])
  }

  // Mount directory: below the temp dir after resolving symlinks and '..'.
  let base = "\(temp)/validation"
  shell("rm -rf '\(base)' && mkdir -p '\(base)/good/sub' && ln -s /etc '\(base)/to-etc' && ln -s good '\(base)/to-good' && touch '\(base)/file'")
  func isMountError(_ error: SandboxError) -> Bool { if case .invalidMountDirectory = error { true } else { false } }
  for (path, why) in [
    ("\(base)/good", "a directory below the temp dir"), ("\(base)/to-good", "a symlink to a directory below the temp dir"),
    ("\(base)/good/sub/..", "a path with '..' that stays below the temp dir"),
  ] {
    do throws(SandboxError) {
      let mountDir = try Sandbox.Changes.OpenMountDirectory(path: path)
      t.expect(mountDir.hostPath == "\(Sandbox.Sys.resolvedPath(base) ?? "")/good", "mount dir: \(why) is accepted and resolved", mountDir.hostPath)
      mountDir.close()
    } catch {
      t.expect(false, "mount dir: \(why) is accepted", error.description)
    }
  }
  for (path, why) in [
    ("\(base)/to-etc", "a symlink pointing out of the temp dir"), ("\(base)/good/../../../../etc", "'..' climbing out"),
    ("\(base)/missing", "a nonexistent path"), ("\(base)/file", "a regular file"), (temp, "the temp dir itself"),
    ("/etc", "a path outside the temp dir"), ("/", "the root"),
  ] {
    t.expectError("mount dir: \(why) is refused", isMountError) { () throws(SandboxError) in _ = try Sandbox.Changes.OpenMountDirectory(path: path) }
  }
  // Script paths.
  for script in ["/mnt/../etc/passwd", "/etc/passwd", "/mnt/", "/mnt/a//b.py", "/mnt/./a.py", "mnt/a.py"] {
    t.expectError("script '\(script)' is refused", { if case .invalidScriptPath = $0 { true } else { false } }) {
      () throws(SandboxError) in _ = try Sandbox.Preflight.checkScript(script, in: nil)
    }
  }
  // Configuration from the environment.
  do throws(SandboxError) {
    let config = try SandboxConfig.fromEnvironment(lookup: { ["CODEEXEC_SANDBOX_VENV": "/v", "CODEEXEC_SANDBOX_AA_PROFILE_NAME": "p"][$0] })
    t.expect(config == SandboxConfig(venvPath: "/v", appArmor: .profile("p")), "config: built from the two environment variables")
  } catch {
    t.expect(false, "config: built from the environment", error.description)
  }
  t.expectError("config: a missing profile variable is an error naming it", {
    if case .missingSetting(let variable, _) = $0 { variable == "CODEEXEC_SANDBOX_AA_PROFILE_NAME" } else { false }
  }) { () throws(SandboxError) in _ = try SandboxConfig.fromEnvironment(lookup: { $0 == "CODEEXEC_SANDBOX_VENV" ? "/v" : nil }) }
  t.expectError("config: a nonexistent venv is refused", { if case .venvNotFound = $0 { true } else { false } }) {
    () throws(SandboxError) in _ = try Sandbox(config: SandboxConfig(venvPath: "/nonexistent/venv", appArmor: .disabled))
  }
  shell("mkdir -p '\(base)/empty-venv/bin'")
  t.expectError("config: a venv without bin/python is refused", { if case .venvHasNoPython = $0 { true } else { false } }) {
    () throws(SandboxError) in _ = try Sandbox(config: SandboxConfig(venvPath: "\(base)/empty-venv", appArmor: .disabled))
  }
  shell("rm -rf '\(base)'")
}

// MARK: - Snapshot diff

func testSnapshots(_ t: inout Tally, temp: String) {
  let base = "\(temp)/snapshot-test"
  shell("rm -rf '\(base)' && mkdir -p '\(base)/dir/deeper' && echo a > '\(base)/keep' && echo b > '\(base)/modify' && echo c > '\(base)/remove' && echo d > '\(base)/dir/deeper/old' && echo e > '\(base)/touched' && touch -d '2001-01-01' '\(base)/touched'")
  guard let mountDir = try? Sandbox.Changes.OpenMountDirectory(path: base), let before = try? mountDir.snapshot() else {
    return t.expect(false, "snapshot: set up")
  }
  defer { mountDir.close() }
  usleep(20_000)
  // Modify; delete; create a file, a symlink out, a FIFO; rewrite a file and reset its mtime.
  shell("echo bb > '\(base)/modify' && rm '\(base)/remove' '\(base)/dir/deeper/old' && echo n > '\(base)/dir/new' && ln -s /etc/shadow '\(base)/link' && mkfifo '\(base)/fifo' && echo E > '\(base)/touched' && touch -d '2001-01-01' '\(base)/touched' && mkdir '\(base)/locked' && echo x > '\(base)/locked/x' && chmod 000 '\(base)/locked'")
  guard let after = try? mountDir.snapshot() else { return t.expect(false, "snapshot: second snapshot") }
  let changes = Sandbox.Changes.makeChangeList(before: before, after: after, excluding: nil)
  let expectedChanged = ["dir/new", "fifo", "link", "modify", "touched"]
  let rootSeesLocked = getuid() == 0  // root reads a mode-000 directory anyway
  t.expect(
    changes.changedText == (rootSeesLocked ? ["dir/new", "fifo", "link", "locked/x", "modify", "touched"] : expectedChanged),
    "snapshot: created, modified, mtime-reset, symlink and FIFO entries are changed files", "\(changes.changedText)")
  t.expect(changes.deletedText == ["dir/deeper/old", "remove"], "snapshot: removals are deleted files", "\(changes.deletedText)")
  t.expect(after.entries["link"]?.type == S_IFLNK, "snapshot: a symlink is recorded as a link, never followed")
  let excluded = Sandbox.Changes.makeChangeList(before: before, after: after, excluding: Array("modify".utf8))
  t.expect(!excluded.changedText.contains("modify"), "snapshot: the script that ran is excluded")
  shell("chmod 700 '\(base)/locked'; rm -rf '\(base)'")
  let unchanged = Sandbox.Changes.makeChangeList(before: before, after: before, excluding: nil)
  t.expect(unchanged == Sandbox.Changes.ChangeList(), "snapshot: no change gives empty lists")
}

/// A snapshot taken while this process may hold only 32 descriptors (caps raised: these trees
/// test descriptors, not the caps).
func snapshotWithin32Descriptors(_ mountDir: Sandbox.Changes.OpenMountDirectory) -> Sandbox.Changes.Snapshot? {
  var limit = rlimit()
  getrlimit(Sandbox.Sys.ResourceLimit.openFiles, &limit)
  var low = limit
  low.rlim_cur = 32
  setrlimit(Sandbox.Sys.ResourceLimit.openFiles, &low)
  defer { setrlimit(Sandbox.Sys.ResourceLimit.openFiles, &limit) }
  return try? mountDir.snapshot(limits: SandboxLimits(trackedEntries: 1 << 20, trackedBytes: 1 << 30))
}

/// A tree big enough for the walk's batches and helper thread, changed in the middle of
/// directory listings, so the diff's by-name fallback is exercised as well as its in-order pairing.
func testLargeSnapshots(_ t: inout Tally, temp: String) {
  let base = "\(temp)/snapshot-large"
  // flat/ holds 1,300 files (6 batches); tree/a..e/deep each hold 120 files.
  shell("rm -rf '\(base)' && mkdir -p '\(base)/flat' && cd '\(base)/flat' && seq 1 1300 | xargs touch && for d in a b c d e; do mkdir -p \"../tree/$d/deep\" && (cd \"../tree/$d\" && seq 1 120 | sed 's/^/f/' | xargs touch && cd deep && seq 1 120 | sed 's/^/g/' | xargs touch); done")
  guard let mountDir = try? Sandbox.Changes.OpenMountDirectory(path: base), let before = try? mountDir.snapshot() else {
    return t.expect(false, "large snapshot: set up")
  }
  defer { mountDir.close() }
  let listed = Set(before.entries.keys)
  let expected = Set(shellOutput("cd '\(base)' && find . -mindepth 1 ! -type d | cut -c3-").split(separator: "\n").map(String.init))
  t.expect(listed == expected && listed.count == 1300 + 5 * 240, "large snapshot: every file found exactly once by the shared walk", "\(listed.count) found, \(expected.count) expected")
  usleep(20_000)
  shell("cd '\(base)' && rm flat/700 flat/1 tree/c/deep/g5 && echo x > flat/650 && echo y > tree/e/f7 && touch flat/new1 flat/new2 tree/b/deep/new && rm -r tree/d")
  guard let after = try? mountDir.snapshot() else { return t.expect(false, "large snapshot: second snapshot") }
  let changes = Sandbox.Changes.makeChangeList(before: before, after: after, excluding: nil)
  t.expect(changes.changedText == ["flat/650", "flat/new1", "flat/new2", "tree/b/deep/new", "tree/e/f7"], "large snapshot: changes found in the middle of long listings", "\(changes.changedText)")
  let removedDirectory = (1...120).map { "tree/d/deep/g\($0)" } + (1...120).map { "tree/d/f\($0)" }
  t.expect(changes.deletedText == (["flat/1", "flat/700", "tree/c/deep/g5"] + removedDirectory).sorted(), "large snapshot: deletions found, including a whole removed directory", "\(changes.deleted.count) deleted")
  // 1,500 subdirectories under a 32-descriptor limit: the walk opens them as it goes.
  shell("cd '\(base)' && rm -rf flat tree && mkdir wide && cd wide && seq 1 1500 | xargs mkdir && for d in 1 750 1500; do touch $d/file; done")
  let wide = snapshotWithin32Descriptors(mountDir)
  t.expect(wide?.entries.keys.sorted() == ["wide/1/file", "wide/1500/file", "wide/750/file"], "large snapshot: 1,500 subdirectories walked within 32 descriptors", "\(wide?.entries.keys.sorted() ?? [])")
  // 1,200 levels, each with a side branch holding a file: the path passes openat2's PATH_MAX,
  // and holding every parent open while its side branch waits would need 1,200 descriptors.
  // Names differ per level, so the listing order (and which branch waits) does too.
  shell("cd '\(base)' && rm -rf wide && mkdir deep && cd deep && /usr/bin/python3 -c 'import os\nfor i in range(1200):\n    for side in (\"s%da\" % i, \"s%db\" % i):\n        os.mkdir(side); open(side + \"/f\", \"w\").close()\n    os.mkdir(\"n%d\" % i); os.chdir(\"n%d\" % i)'")
  let deep = snapshotWithin32Descriptors(mountDir)
  let deepest = "deep/" + (0..<1199).map { "n\($0)/" }.joined() + "s1199b/f"
  t.expect(deep?.entries.count == 2400 && deep?.entries[deepest] != nil, "large snapshot: 1,200 levels with side branches walked within 32 descriptors", "\(deep?.entries.count ?? 0) found")
  // Opening below a directory refuses symlinks in any component and '..', with and without openat2.
  shell("cd '\(base)' && mkdir -p real/sub && ln -s real link")
  let top = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
  for (name, open) in [("openat2", Sandbox.Changes.openBeneath), ("per component", Sandbox.Changes.openBeneathByComponents)] {
    func opened(_ path: String) -> Int32 { open(top, Array(path.utf8), O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
    let good = opened("real/sub")
    let results = [good, opened("link/sub"), opened("link"), opened("../\(base.split(separator: "/").last!)/real")]
    t.expect(results[0] >= 0 && results[1...].allSatisfy { $0 < 0 }, "snapshot: opening beneath (\(name)) refuses symlinks and escapes", "\(results)")
    for fd in results where fd >= 0 { close(fd) }
  }
  close(top)
  shell("rm -rf '\(base)'")
}

// MARK: - The cgroup layer's checks (on a fake hierarchy: this host has cgroup v1 only)

func testCgroupChecks(_ t: inout Tally, temp: String) {
  typealias Cgroup = Sandbox.Cgroup
  let fake = "\(temp)/unit-cgroup-\(getpid())"
  mkdir(fake, 0o755)
  defer { Sandbox.Changes.removeTree(fake) }
  func reason(_ availability: Cgroup.Availability) -> String {
    if case .unavailable(let reason) = availability { reason } else { "available" }
  }
  t.expect(reason(Cgroup.check(parent: fake)).contains("not on a cgroup v2"), "cgroup: a directory without cgroup.controllers is not a cgroup v2", reason(Cgroup.check(parent: fake)))
  writeFile("\(fake)/cgroup.controllers", "cpu memory pids\n")
  writeFile("\(fake)/cgroup.procs", "4242\n")
  writeFile("\(fake)/cgroup.subtree_control", "memory\n")
  t.expect(reason(Cgroup.check(parent: fake)).contains("holds processes of its own"), "cgroup: a parent with processes is refused (no-internal-processes rule)", reason(Cgroup.check(parent: fake)))
  writeFile("\(fake)/cgroup.procs", "")
  t.expect(reason(Cgroup.check(parent: fake)).contains("lacks pids"), "cgroup: a parent that does not hand down pids is refused, naming it and the fix", reason(Cgroup.check(parent: fake)))
  writeFile("\(fake)/cgroup.subtree_control", "cpu memory pids\n")
  t.expect(Cgroup.check(parent: fake) == .available(parent: Sandbox.Sys.resolvedPath(fake) ?? fake, controllers: ["cpu", "memory", "pids"]), "cgroup: an empty, writable parent with the controllers is available", reason(Cgroup.check(parent: fake)))
  // A run's cgroup whose limit files refuse (here: they do not exist) fails closed and leaves nothing.
  do throws(SandboxError) {
    _ = try Cgroup.RunGroup(parent: fake, limits: SandboxLimits(memoryBytes: 64 << 20))
    t.expect(false, "cgroup: a run's cgroup whose memory.max cannot be written is an error")
  } catch {
    var left: [String] = []
    if let directory = opendir(fake) {
      while let entry = readdir(directory) { left.append(Sandbox.Sys.entryName(entry)) }
      closedir(directory)
    }
    let isCgroupError: Bool = if case .layerUnavailable(.cgroup, _, _) = error { true } else { false }
    t.expect(isCgroupError && !left.contains { $0.hasPrefix("sandbox-") }, "cgroup: a run's cgroup whose memory.max cannot be written is an error, and its directory is removed", "\(error) \(left)")
  }
  if getuid() == 0, let owned = try? SandboxMountDirectory(prefix: "unit-owner-", owner: "sandboxci") {
    var parent = stat()
    var mount = stat()
    stat(owned.parent, &parent)
    stat(owned.path, &mount)
    let account = try? Sandbox.Preflight.HostUser("sandboxci")
    t.expect(
      parent.st_uid == account?.uid && mount.st_uid == account?.uid && parent.st_mode & 0o777 == 0o700,
      "--user: SandboxMountDirectory(owner:) makes the private parent and the mount dir the account's (parent 0700)")
    owned.remove()
  } else {
    t.skip("--user: SandboxMountDirectory(owner:) makes the pair the account's", "not root, or no user sandboxci")
  }
  // The terminal relay's filter: what acts on the user's terminal goes, what draws passes.
  func filtered(_ chunks: [String]) -> String {
    let filter = Sandbox.Spawner.TerminalFilter()
    return String(decoding: chunks.flatMap { filter.filter(Array($0.utf8)) }, as: UTF8.self)
  }
  let drawing = "\u{1B}[31mred\u{1B}[0m \u{1B}[2K\u{1B}[1G\u{1B}[?25l é€😀\r\n>>> "
  t.expect(filtered([drawing]) == drawing, "terminal: colours, cursor movement, erasing and UTF-8 text pass unchanged", filtered([drawing]).debugDescription)
  let attacks = [
    "a\u{1B}]52;c;aGVsbG8=\u{07}b", "a\u{1B}]0;pwned\u{1B}\\b", "a\u{1B}P$q m\u{1B}\\b", "a\u{1B}_apc\u{1B}\\b",
    "a\u{1B}^pm\u{07}b", "a\u{1B}[21tb", "a\u{1B}[6nb", "a\u{1B}[cb", "a\u{1B}[>0qb", "a\u{1B}[?2026$pb",
    "a\u{9D}0;title\u{9C}b", "a\u{9B}6nb",
  ]
  let leaked = attacks.filter { filtered([$0]) != "ab" }
  t.expect(leaked.isEmpty, "terminal: OSC 52 and titles, DCS, APC, PM, report requests (CSI 21t, 6n, c, >q, $p) and C1 forms are dropped", leaked.map(\.debugDescription).joined(separator: " "))
  let split = filtered(["a\u{1B}]52;c;", "aGVsbG8=", "\u{07}b\u{1B}", "[6", "nc"])
  t.expect(split == "abc", "terminal: sequences split across reads are dropped whole", split.debugDescription)
  var raw: [UInt8] = Array("a".utf8) + [0x9D] + Array("0;x".utf8) + [0x07] + Array("b".utf8)
  raw = Sandbox.Spawner.TerminalFilter().filter(raw)
  t.expect(raw == Array("ab".utf8), "terminal: raw 8-bit OSC is dropped too", "\(raw)")
  let onThisHost = reason(Cgroup.find(configured: nil))
  t.expect(onThisHost != "available" || Sandbox.Sys.exists("/sys/fs/cgroup/cgroup.controllers"), "cgroup: detection on this host says why the layer does not apply", onThisHost)
  let config = SandboxConfig(venvPath: "/nonexistent", appArmor: .disabled)
  var required = config
  required.requireCgroup = true
  t.expectError("cgroup: requireCgroup without the layer is refused, naming the reason", { if case .layerUnavailable(.cgroup, let why, _) = $0 { why == "no cgroup here" } else { false } }) {
    () throws(SandboxError) in try Sandbox.checkLayers(required, cgroup: .unavailable(reason: "no cgroup here"))
  }
}

// MARK: - Exit status, JSON, command line

func testPureHelpers(_ t: inout Tally) {
  let missing = Sandbox.NetworkHelper.unavailability(find: { $0 == "pasta" ? nil : "/usr/bin/\($0)" }) ?? ""
  t.expect(missing.contains("pasta is not installed") && missing.contains("'passt'"), "isolated network: without pasta the mode fails closed, naming the package", missing)
  let batches = Sandbox.NetworkHelper.ruleBatches(hostAddresses: (["192.0.2.2", "127.0.0.1"], ["::1", "fe80::1", "2001:db8::5"]))
  t.expect(
    batches.v4.contains("to 169.254.0.0/16 prohibit") && batches.v4.contains("to 192.0.2.2/32 prohibit") && batches.v6.contains("to fd00:ec2::254/128 prohibit")
      && batches.v6.contains("to 2001:db8::5/128 prohibit") && !batches.v6.contains("fe80::1/128") && batches.v6.split(separator: "\n").filter { $0.contains(" ::1/128 ") }.count == 1,
    "isolated network: the rules prohibit link-local, metadata and every host address, each once", batches.v4 + batches.v6)
  // Ubuntu's kernel.apparmor_restrict_unprivileged_userns exists on no Debian kernel: simulated.
  t.expectError("blocked host: Ubuntu's apparmor_restrict_unprivileged_userns=1 (simulated) is named with its fix", {
    if case .userNamespacesUnavailable(let reason, let fix) = $0 { reason.contains("apparmor_restrict_unprivileged_userns is 1") && fix.contains("userns,") } else { false }
  }) { () throws(SandboxError) in
    try Sandbox.Preflight.HostFacts.checkUserNamespaces(uid: 1000) { $0.hasSuffix("apparmor_restrict_unprivileged_userns") ? "1\n" : nil }
  }
  let emfile = SandboxError.system(call: "pipe2", path: nil, errno: EMFILE)
  t.expect(
    emfile.hint?.contains("RLIMIT_NOFILE soft limit") == true && emfile.hint?.contains("Sandbox.Admission.maximum") == true,
    "errors: EMFILE names the descriptor limit, the per-run cost and the fix", emfile.hint ?? "no hint")
  let kinds = [
    Sandbox.CLI.errorKind(.missingSetting(variable: "V", flag: "--venv PATH")),
    Sandbox.CLI.errorKind(.bwrapNotFound), Sandbox.CLI.errorKind(.runCancelled), Sandbox.CLI.errorKind(.tooManyRuns(maximum: 3)),
    Sandbox.CLI.errorKind(.appArmorUnavailable(reason: "r")),
  ]
  t.expect(
    kinds == ["missing_setting", "bwrap_not_found", "run_cancelled", "too_many_runs", "app_armor_unavailable"],
    "json: error kinds are the SandboxError cases in snake_case", "\(kinds)")
  let venvHint = SandboxError.missingSetting(variable: SandboxConfig.venvVariable, flag: "--venv PATH").hint ?? ""
  let profileHint = SandboxError.missingSetting(variable: SandboxConfig.profileVariable, flag: "--apparmor-profile-name NAME").hint ?? ""
  t.expect(
    venvHint.contains("SandboxConfig(venvPath:") && !venvHint.contains("together")
      && (Sandbox.Preflight.HostFacts.appArmorAbsenceReason() == nil
        ? profileHint.contains("only together") : profileHint.contains("fromEnvironment(appArmorDisabled: true)")),
    "errors: a missing setting's hint gives the library's answer too, and --no-apparmor where the kernel has no AppArmor",
    "\(venvHint) | \(profileHint)")
  t.expect(Sandbox.Spawner.ExitStatus(waitStatus: 3 << 8).returnCode == 3, "exit status: exited 3 is 3")
  t.expect(Sandbox.Spawner.ExitStatus(waitStatus: 9).returnCode == -9, "exit status: SIGKILL is -9")
  t.expect(Sandbox.Spawner.ExitStatus(waitStatus: 137 << 8).returnCode == 137, "exit status: exited 137 is 137 to the spawner")
  t.expect(Sandbox.Bwrap.Report.returnCode(.exited(137)) == -9 && Sandbox.Bwrap.Report.returnCode(.exited(3)) == 3, "exit status: bwrap's 128+9 is the payload's -9")
  let result = SandboxResult(
    returnCode: -9, stdout: [0x61, 0xff, 0x0a], stderr: Array("q\"\\\u{1}".utf8), timedOut: true, cancelled: false,
    outputTruncated: false, duration: .milliseconds(1500), changedPaths: [Array("a b".utf8), [0xff], [0xfe]],
    deletedPaths: [Array("\u{FFFD}".utf8)], changesTruncated: true, cleanupIncomplete: nil, limitHit: .timeout,
    layers: ["namespaces", "seccomp"])
  let json = Sandbox.CLI.makeJSON(result, outputs: [
    Sandbox.CLI.OutputReport(path: "o.txt", file: SandboxOutputFile(bytes: Array("hi".utf8), size: 2, truncated: false)),
    Sandbox.CLI.OutputReport(path: "o.bin", file: SandboxOutputFile(bytes: [0, 0xff], size: 9, truncated: true)),
    Sandbox.CLI.OutputReport(path: "gone", error: "missing"),
  ])
  t.expect(
    json == #"{"schema": 3, "returncode": -9, "stdout": "a\#u{FFFD}\n", "stdout_b64": "Yf8K", "stderr": "q\"\\\u0001", "changed_files": ["a b"], "changed_files_b64": ["/w==", "/g=="], "deleted_files": ["\#u{FFFD}"], "deleted_files_b64": [], "timed_out": true, "output_truncated": false, "duration_seconds": 1.5, "limit_hit": "timeout", "layers": ["namespaces", "seccomp"], "changes_truncated": true, "cleanup_incomplete": null, "memory_peak_bytes": null, "cpu_seconds": null, "outputs": [{"path": "o.txt", "size": 2, "truncated": false, "text": "hi"}, {"path": "o.bin", "size": 9, "truncated": true, "b64": "AP8="}, {"path": "gone", "error": "missing"}]}"#,
    "json: schema, escaping, exact bytes in *_b64 fields (each name in one list), outputs", json)
  var accounted = result
  accounted.memoryPeakBytes = 67_108_864
  accounted.cpuTime = .milliseconds(1250)
  let usage = Sandbox.CLI.makeJSON(accounted)
  t.expect(
    usage.contains(#""memory_peak_bytes": 67108864, "cpu_seconds": 1.25}"#),
    "json (schema 2): the cgroup's memory peak and CPU time are numbers when the layer accounted them", usage)
  var ended = result
  let cases: [(Int32, Bool, SandboxLimitHit?)] = [(-9, false, nil), (3, false, nil), (-24, false, .cpu), (-9, false, .disk), (0, true, nil)]
  let terminations = cases.map {
    ended.returnCode = $0.0
    ended.timedOut = $0.1
    ended.limitHit = $0.2
    return ended.termination
  }
  t.expect(
    result.termination == .stopped(.timeout) && terminations == [.signaled(9), .exited(3), .signaled(24), .stopped(.disk), .stopped(.timeout)],
    "result: termination says in one answer how the run ended", "\(terminations)")
  // The writer decodes bytes in place exactly as String(decoding:) would (random and edge cases).
  var generator = SystemRandomNumberGenerator()
  var samples: [[UInt8]] = [[0xe2, 0x82], [0xf0, 0x9f, 0x98], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xf4, 0x90, 0x80, 0x80], [0xef, 0xbb, 0xbf]]
  for _ in 0..<500 { samples.append((0..<Int.random(in: 0...12, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }) }
  let mismatched = samples.filter { sample in
    var inPlace = Sandbox.CLI.JSONWriter()
    inPlace.string(decoding: sample)
    var viaString = Sandbox.CLI.JSONWriter()
    viaString.string(String(decoding: sample, as: UTF8.self))
    return inPlace.bytes != viaString.bytes
  }
  t.expect(mismatched.isEmpty, "json: streams are decoded in place exactly as String(decoding:) replaces invalid UTF-8 (506 samples)", "\(mismatched.prefix(3))")
  t.expect(result.changedFiles == ["a b"] && result.deletedFiles == ["\u{FFFD}"], "result: changedFiles lists the names that are valid UTF-8, changedPaths all of them")
  t.expect(["", "f", "fo", "foo", "foob", "fooba", "foobar"].map { Sandbox.Sys.base64(Array($0.utf8)) } == ["", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"], "base64: the RFC 4648 test vectors")
  func parses(_ arguments: [String]) -> Bool { (try? Sandbox.CLI.parse(arguments)) != nil }
  t.expect(parses(["run", "--no-apparmor", "--venv", "/v", "--code", "print(1)", "--env", "A=1", "--env", "B=2=3", "--timeout", "2.5", "--json"]), "cli: a full run command parses")
  for (arguments, why) in [
    (["--bogus"], "an unknown flag"), (["run", "--code"], "a missing value"), (["run", "--code", "1", "--script", "/mnt/a.py"], "--code with --script"),
    (["--enable-network", "--disable-network"], "both network flags"), (["--no-apparmor", "--apparmor-profile-name", "p"], "a profile with --no-apparmor"),
    (["run", "--script", "/etc/x.py"], "a script outside /mnt"), (["run", "--script", "/mnt/../x.py"], "a script through '..'"),
    (["run", "--timeout", "-1"], "a negative timeout"), (["run", "--timeout", "abc"], "a non-numeric timeout"), (["run", "--timeout", "nan"], "a NaN timeout"),
    (["run", "--env", "NOEQUALS"], "--env without '='"), (["run", "--env", "1X=2"], "--env with a bad name"), (["--json"], "a run flag in self-test mode"),
    (["run", "--verbose"], "a self-test flag in run mode"), (["--venv", "a", "--venv", "b"], "a repeated flag"), (["--verbose=yes"], "a value on a bare flag"),
  ] {
    t.expect(!parses(arguments), "cli: \(why) is a usage error")
  }
  let reports: [(String, pid_t?)] = [
    ("{\n    \"child-pid\": 4242\n}", 4242), ("{\"child-pid\":7,", 7), ("{\"child-pid\": 42", nil), ("{\"child-pid\": ", nil),
    ("{\"child-pid\": -3}", nil), ("{\"child-pid\": 0}", nil), ("{\"child\": 5}", nil), ("", nil),
  ]
  for (report, expected) in reports {
    t.expect(Sandbox.Bwrap.Report.number(after: "child-pid", in: Array(report.utf8)).flatMap { $0 > 0 ? $0 : nil } == expected, "bwrap report: child pid of \(report.debugDescription) is \(expected.map(String.init) ?? "none")")
  }
  t.expect(Sandbox.Bwrap.Report.number(after: "exit-code", in: Array("{ \"child-pid\": 5 }\n{ \"exit-code\": 137 }\n".utf8)) == 137, "bwrap report: the exit code follows the child pid")
  t.expect([" \tY\n", "Y", "\n\n", "a b \r\n"].map(Sandbox.Sys.trimmed) == ["Y", "Y", "", "a b"], "trimmed: ASCII white space goes from both ends only")
}

// MARK: - End to end, against real bwrap

func payload(_ sandbox: Sandbox, _ code: String, mount: String? = nil, timeout: Duration? = .seconds(30), stdin: [UInt8] = [], environment: [String: String] = [:]) -> SandboxResult? {
  do throws(SandboxError) {
    return try sandbox.run(.code(code), mountDirectory: mount, timeout: timeout, stdin: stdin, environment: environment)
  } catch {
    print("# run failed: \(error.description)")
    return nil
  }
}

func testEndToEnd(_ t: inout Tally, venv: String, temp: String) async {
  let sandbox: Sandbox
  let offline: Sandbox
  do throws(SandboxError) {
    sandbox = try Sandbox(config: SandboxConfig(venvPath: venv, appArmor: .disabled))
    offline = try Sandbox(config: SandboxConfig(venvPath: venv, appArmor: .disabled, networkEnabled: false))
  } catch {
    return t.expect(false, "e2e: sandbox for \(venv)", error.description)
  }
  t.expectError("e2e: asking for a profile on a kernel without AppArmor is refused, not ignored", {
    if case .appArmorUnavailable = $0 { Sandbox.Preflight.HostFacts.appArmorAbsenceReason() != nil } else if case .appArmorProfileNotInstalled = $0 { true } else { false }
  }) { () throws(SandboxError) in _ = try Sandbox(config: SandboxConfig(venvPath: venv, appArmor: .profile("sandbox_test"))) }

  let hello = payload(sandbox, "print('hello from sandbox')")
  t.expect(hello?.stdoutText == "hello from sandbox\n" && hello?.returnCode == 0 && hello?.isSuccess == true, "e2e: hello world")
  t.expect(payload(sandbox, "import sys; sys.exit(7)")?.returnCode == 7, "e2e: the exit code comes back")
  let raised = payload(sandbox, "raise ValueError('boom')")
  t.expect(raised?.returnCode == 1 && raised?.stderrText.contains("ValueError: boom") == true, "e2e: an exception gives 1 and a traceback on stderr")
  t.expect(payload(sandbox, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")?.returnCode == -9, "e2e: death by signal is a negative return code")
  let echoed = payload(sandbox, "import sys; print(sys.stdin.read().upper())", stdin: Array("piped in".utf8))
  t.expect(echoed?.stdoutText == "PIPED IN\n", "e2e: stdin reaches the payload")

  let slow = payload(sandbox, "import time\nprint('before', flush=True)\ntime.sleep(30)\nprint('after')", timeout: .milliseconds(800))
  t.expect(
    slow?.timedOut == true && slow?.stdoutText == "before\n" && (slow?.duration ?? .seconds(99)) < .seconds(5),
    "e2e: a timeout kills the run and keeps the partial output", "\(String(describing: slow?.stdoutText)) \(String(describing: slow?.duration))")

  // /mnt: writes reach the host; deletions and modifications are reported; the rest is not.
  let mount = "\(temp)/e2e-mount"
  shell("rm -rf '\(mount)' && mkdir -p '\(mount)' && echo old > '\(mount)/gone.txt' && echo same > '\(mount)/same.txt' && echo v1 > '\(mount)/edit.txt'")
  let written = payload(
    sandbox, "import os\nopen('/mnt/out.txt','w').write('result\\n')\nos.remove('/mnt/gone.txt')\nopen('/mnt/edit.txt','a').write('v2\\n')\nos.makedirs('/mnt/sub')\nopen('/mnt/sub/x','w').write('x')",
    mount: mount)
  t.expect(written?.changedFiles == ["edit.txt", "out.txt", "sub/x"], "e2e: changed files are reported", "\(String(describing: written?.changedFiles)) \(written?.stderrText ?? "")")
  t.expect(written?.deletedFiles == ["gone.txt"], "e2e: deleted files are reported", "\(String(describing: written?.deletedFiles))")
  t.expect(Sandbox.Sys.readSmallFile("\(mount)/out.txt") == "result\n", "e2e: the file written to /mnt is on the host")

  writeFile("\(mount)/code.py", "print('script ran')\nopen('/mnt/made.txt','w').write('m')\n")
  do throws(SandboxError) {
    let script = try await sandbox.run(.script(sandboxPath: "/mnt/code.py"), mountDirectory: mount, timeout: .seconds(30))
    t.expect(script.stdoutText == "script ran\n" && script.changedFiles == ["made.txt"], "e2e: a script from /mnt runs and is excluded from changed files", "\(script.changedFiles)")
  } catch {
    t.expect(false, "e2e: a script from /mnt runs", error.description)
  }
  t.expectError("e2e: a script that is not in the mount dir is refused before running", { if case .invalidScriptPath = $0 { true } else { false } }) {
    () throws(SandboxError) in _ = try sandbox.run(.script(sandboxPath: "/mnt/missing.py"), mountDirectory: mount)
  }
  mkdir("\(mount)/real", 0o755)
  writeFile("\(mount)/real/code.py", "print('via a link')\n")
  _ = symlink("real", "\(mount)/link")
  t.expectError("e2e: a script reached through a symlinked directory in the mount dir is refused", { if case .invalidScriptPath = $0 { true } else { false } }) {
    () throws(SandboxError) in _ = try sandbox.run(.script(sandboxPath: "/mnt/link/code.py"), mountDirectory: mount)
  }
  _ = unlink("\(mount)/link")
  _ = unlink("\(mount)/real/code.py")
  _ = rmdir("\(mount)/real")
  t.expectError("e2e: a mount dir outside the temp dir is refused before running", { if case .invalidMountDirectory = $0 { true } else { false } }) {
    () throws(SandboxError) in _ = try sandbox.run(.code("open('/mnt/x','w')"), mountDirectory: "/var")
  }
  t.expect(!Sandbox.Sys.exists("/var/x"), "e2e: ... and nothing was written")

  // Invisible and read-only.
  let hostOnly = "\(temp)/e2e-host-only-\(getpid())"
  writeFile(hostOnly, "secret")
  let probe = payload(sandbox, """
    import os
    seen = [p for p in ("\(hostOnly)", "/etc/hostname", "/etc/shadow", "/root/.bashrc", "/var/log", "/home", "/opt/swift") if os.path.exists(p)]
    blocked = []
    for d in ("/usr", "\(venv)", "/"):
        try:
            open(os.path.join(d, "x"), "w")
        except OSError:
            blocked.append(d)
    print("seen", seen, "blocked", len(blocked))
    """)
  t.expect(probe?.stdoutText == "seen [] blocked 3\n", "e2e: host files outside the binds are invisible; system dirs, venv and / are read-only", probe?.stdoutText ?? "")
  unlink(hostOnly)

  // Network off: a listener on the host's loopback is unreachable; on: reachable (documented).
  if let listener = t.require(try? Sandbox.SelfTests.openLoopbackListener(), "e2e: a loopback listener for the network probes") {
    let code = "import socket\ntry:\n    socket.create_connection(('127.0.0.1', \(listener.port)), timeout=3); print('REACHED')\nexcept OSError as e: print('BLOCKED', e.errno)"
    t.expect(payload(offline, code)?.stdoutText.hasPrefix("BLOCKED") == true, "e2e: network off blocks a host TCP listener on 127.0.0.1")
    t.expect(payload(sandbox, code)?.stdoutText == "REACHED\n", "e2e: network on reaches it (the documented default)")
    close(listener.fd)
  }

  // Host abstract unix sockets: Landlock's scope (EPERM) with the network on, another
  // namespace (ECONNREFUSED) with it off; an unsandboxed process reaches the same socket.
  if let listener = t.require(try? Sandbox.SelfTests.openAbstractListener(name: "sandbox-unit-\(getpid())"), "abstract sockets: a host listener") {
    let probe = "import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect('\\0sandbox-unit-\(getpid())'); print('REACHED')\nexcept OSError as e: print('BLOCKED', e.errno)"
    let control = try? Sandbox.Spawner.runToCompletion(Sandbox.Spawner.Request(executable: "/usr/bin/python3", arguments: ["-c", probe], environment: []))
    t.expect(control.map { String(decoding: $0.stdout, as: UTF8.self) } == "REACHED\n", "abstract sockets: the host's listener is reachable outside the sandbox (control)")
    if Sandbox.Landlock.scopesAbstractSockets {
      t.expect(payload(sandbox, probe)?.stdoutText == "BLOCKED 1\n", "abstract sockets: network on, Sandbox.Landlock's scope refuses the host's listener (EPERM)")
    } else {
      t.skip("abstract sockets: network on, Sandbox.Landlock's scope refuses the host's listener", "Sandbox.Landlock ABI \(Sandbox.Landlock.abi) < 6 on this kernel")
    }
    t.expect(payload(offline, probe)?.stdoutText == "BLOCKED 111\n", "abstract sockets: network off, the host's listener is in another namespace")
    close(listener)
  }

  // Environment scrubbing: a secret in the host's environment never shows.
  setenv("SANDBOX_TEST_SECRET", "hunter2", 1)
  let environment = payload(
    sandbox, "import os\nenv = dict(os.environ)\ninit = open('/proc/1/environ','rb').read()\nprint(sorted(env), b'hunter2' in init, env.get('GIVEN'))",
    environment: ["GIVEN": "yes"])
  t.expect(
    environment?.stdoutText == "['GIVEN', 'HOME', 'LANG', 'PATH', 'PWD', 'TMPDIR'] False yes\n",
    "e2e: the environment is the allowlist plus the caller's variables; bwrap's own is empty", environment?.stdoutText ?? "")

  // Big code, big output.
  let bigCode = "data = '" + String(repeating: "x", count: 10 << 20) + "'\nprint(len(data))\n"
  t.expect(payload(sandbox, bigCode)?.stdoutText == "\(10 << 20)\n", "e2e: 10 MiB of code reaches the interpreter")
  let flood = payload(sandbox, "import sys\nsys.stdout.write('o' * (24 << 20))\nsys.stderr.write('e' * (24 << 20))")
  t.expect(flood?.stdout.count == 16 << 20 && flood?.stderr.count == 16 << 20 && flood?.outputTruncated == true, "e2e: 24 MiB on both streams neither deadlocks nor exceeds the 16 MiB cap")
  let both = payload(sandbox, "import sys\nfor i in range(2000):\n    sys.stdout.write('o' * 1000); sys.stderr.write('e' * 1000)")
  t.expect(both?.stdout.count == 2_000_000 && both?.stderr.count == 2_000_000 && both?.outputTruncated == false, "e2e: interleaved output on both streams is complete")

  // A forking, SIGTERM-ignoring daemon does not survive a timeout.
  let daemonMount = "\(temp)/e2e-daemon"
  shell("rm -rf '\(daemonMount)' && mkdir -p '\(daemonMount)'")
  _ = payload(sandbox, """
    import os, signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.fork() == 0:
        os.setsid()
        while True:
            open('/mnt/beat', 'a').write('x'); time.sleep(0.02)
    time.sleep(60)
    """, mount: daemonMount, timeout: .milliseconds(600))
  let beats = Sandbox.Sys.readSmallFile("\(daemonMount)/beat")?.count ?? 0
  usleep(200_000)
  t.expect(beats > 0 && Sandbox.Sys.readSmallFile("\(daemonMount)/beat")?.count == beats, "e2e: after a timeout no process of the payload remains", "beats \(beats)")

  // Concurrency: runs in parallel see only their own /mnt.
  var directories: [String] = []
  for index in 0..<6 {
    let directory = "\(temp)/e2e-concurrent-\(index)"
    shell("rm -rf '\(directory)' && mkdir -p '\(directory)'")
    writeFile("\(directory)/id", "\(index)")
    directories.append(directory)
  }
  let results = await withTaskGroup(of: (Int, SandboxResult?).self) { group in
    for (index, directory) in directories.enumerated() {
      group.addTask {
        let result = try? await sandbox.run(
          .code("import os, time\ntime.sleep(0.2)\nprint(open('/mnt/id').read(), sorted(os.listdir('/mnt')))\nopen('/mnt/out','w').write('done')"),
          mountDirectory: directory, timeout: .seconds(30))
        return (index, result)
      }
    }
    var collected: [Int: SandboxResult] = [:]
    for await (index, result) in group { collected[index] = result }
    return collected
  }
  let concurrentOK = (0..<6).allSatisfy { index in
    results[index]?.stdoutText == "\(index) ['id']\n" && results[index]?.changedFiles == ["out"]
  }
  t.expect(concurrentOK, "e2e: six concurrent async runs don't interfere")

  // Cancelling the Task kills the sandbox promptly.
  let started = ContinuousClock.now
  let task = Task { try? await sandbox.run(.code("import time\nprint('up', flush=True)\ntime.sleep(30)"), timeout: .seconds(60)) }
  try? await Task.sleep(for: .milliseconds(700))
  task.cancel()
  let cancelled = await task.value
  t.expect(
    cancelled?.cancelled == true && ContinuousClock.now - started < .seconds(5) && cancelled?.stdoutText == "up\n",
    "e2e: cancelling the Task kills the sandbox and returns the partial output")

  // The admission limiter: one per process, waiting or throwing by its policy.
  Sandbox.Admission.maximum = 2
  Sandbox.Admission.lock.withLock { Sandbox.Admission.peak = 0 }
  let queued = await withTaskGroup(of: Bool.self) { group in
    for _ in 0..<6 {
      group.addTask { (try? await sandbox.run(.code("import time; time.sleep(0.3); print('ok')")))?.stdoutText == "ok\n" }
    }
    var all = true
    for await ok in group { all = all && ok }
    return all
  }
  let peak = Sandbox.Admission.lock.withLock { Sandbox.Admission.peak }
  t.expect(queued && peak == 2, "admission: six runs with maximum 2 all run, never more than 2 at once", "peak \(peak)")
  Sandbox.Admission.maximum = 1
  let holder = Task { try? await sandbox.run(.code("import time; time.sleep(1.5)")) }
  while Sandbox.Admission.inFlight == 0 { try? await Task.sleep(for: .milliseconds(10)) }
  Sandbox.Admission.policy = .fail
  var refused = false
  do throws(SandboxError) {
    _ = try await sandbox.run(.code("print('ran')"))
  } catch {
    if case .tooManyRuns(let maximum) = error { refused = maximum == 1 }
  }
  t.expect(refused, "admission: policy .fail throws tooManyRuns past the maximum, nothing spawned")
  Sandbox.Admission.policy = .wait
  let waitStart = ContinuousClock.now
  let waiter = Task { () -> SandboxError? in
    do throws(SandboxError) {
      _ = try await sandbox.run(.code("print('ran')"))
      return nil
    } catch { return error }
  }
  try? await Task.sleep(for: .milliseconds(200))
  waiter.cancel()
  let waitError = await waiter.value
  t.expect(
    waitError == .runCancelled && ContinuousClock.now - waitStart < .seconds(1),
    "admission: a run waiting for a slot is cancellable (runCancelled within 1 s)", "\(String(describing: waitError))")
  _ = await holder.value
  Sandbox.Admission.maximum = nil
  // The default follows RLIMIT_NOFILE: at a soft limit of 256 (room for 8 runs), 48 concurrent runs never hit EMFILE.
  var saved = rlimit()
  getrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved)
  var lowered = saved
  lowered.rlim_cur = 256
  setrlimit(Int32(RLIMIT_NOFILE.rawValue), &lowered)
  let crowd = await withTaskGroup(of: String.self) { group in
    for _ in 0..<48 {
      group.addTask {
        do throws(SandboxError) {
          return try await sandbox.run(.code("print('ok')"), timeout: .seconds(60)).stdoutText
        } catch { return error.description }
      }
    }
    var outcomes: [String] = []
    for await outcome in group { outcomes.append(outcome) }
    return outcomes
  }
  setrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved)
  t.expect(
    crowd.allSatisfy { $0 == "ok\n" }, "admission: 48 concurrent runs at ulimit -n 256 all succeed (the default maximum)",
    crowd.first { $0 != "ok\n" } ?? "")
  // What one run holds: descriptors counted in /proc/self/fd while it sleeps, against descriptorsPerRun.
  func openDescriptors() -> Int {
    guard let directory = opendir("/proc/self/fd") else { return -1 }
    defer { closedir(directory) }
    var count = -1  // the directory's own descriptor
    while let entry = readdir(directory) { if entry.pointee.d_name.0 != 0x2e { count += 1 } }
    return count
  }
  let idle = openDescriptors()
  var busiest = 0
  let sleeper = Task { try? await sandbox.run(.code("import time; time.sleep(0.8)"), mountDirectory: directories[0]) }
  for _ in 0..<30 {
    try? await Task.sleep(for: .milliseconds(20))
    busiest = max(busiest, openDescriptors() - idle)
  }
  _ = await sleeper.value
  t.expect(
    busiest > 0 && busiest <= Sandbox.Admission.descriptorsPerRun,
    "admission: one run with a mount dir holds at most descriptorsPerRun (\(Sandbox.Admission.descriptorsPerRun)) descriptors",
    "\(busiest) seen, \(idle) idle")

  // Limits: each one ends a bounded bomb, and the result says which.
  func limited(_ limits: SandboxLimits, seccomp: Bool = true) -> Sandbox? {
    do throws(SandboxError) {
      return try Sandbox(config: SandboxConfig(venvPath: venv, appArmor: .disabled, limits: limits, seccompEnabled: seccomp))
    } catch {
      t.expect(false, "limits: a sandbox with \(limits)", error.description)
      return nil
    }
  }
  if let cpu = limited(SandboxLimits(cpuSeconds: 1)) {
    let spin = payload(cpu, "while True: pass", timeout: .seconds(20))
    t.expect(spin?.limitHit == .cpu && spin?.returnCode == -SIGXCPU && (spin?.duration ?? .seconds(99)) < .seconds(10), "limits: a CPU spin ends at the CPU limit (SIGXCPU), reported as cpu", "\(String(describing: spin?.limitHit)) \(String(describing: spin?.returnCode))")
    let stubborn = payload(cpu, "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True: pass", timeout: .seconds(20))
    t.expect(stubborn?.limitHit == .cpu && stubborn?.returnCode == -SIGKILL, "limits: ignoring SIGXCPU ends in SIGKILL at the hard limit, still reported as cpu", "\(String(describing: stubborn?.limitHit)) \(String(describing: stubborn?.returnCode))")
    let forged = ["import sys\nsys.exit(152)", "import os, signal\nos.kill(os.getpid(), signal.SIGXCPU)"].map { payload(cpu, $0) }
    t.expect(
      forged.allSatisfy { $0?.returnCode == -SIGXCPU && $0?.limitHit == nil },
      "limits: a payload that sends itself SIGXCPU or exits 152 is not reported as hitting the CPU limit (the kernel's CPU time decides)",
      "\(forged.map { "\(String(describing: $0?.returnCode)) \(String(describing: $0?.limitHit))" })")
  }
  if let memory = limited(SandboxLimits(memoryBytes: 256 << 20)) {
    let bomb = payload(memory, "chunks = []\nfor _ in range(64):\n    chunks.append(bytearray(64 << 20))\nprint('survived')")  // ceiling 4 GiB
    t.expect(bomb?.limitHit == .memory && bomb?.stderrText.contains("MemoryError") == true && bomb?.stdoutText == "", "limits: a stepwise memory bomb ends in MemoryError, reported as memory")
  }
  let fileMount = "\(temp)/e2e-limits"
  shell("rm -rf '\(fileMount)' && mkdir -p '\(fileMount)'")
  if let files = limited(SandboxLimits(fileSizeBytes: 20 << 20)) {
    let big = payload(files, "open('/mnt/big', 'wb').write(b'x' * (200 << 20))", mount: fileMount)
    var info = stat()
    stat("\(fileMount)/big", &info)
    t.expect(big?.limitHit == .fileSize && info.st_size == 20 << 20, "limits: a 200 MiB write with a 20 MiB file limit stops at 20 MiB", "size \(info.st_size)")
  }
  if let disk = limited(SandboxLimits(mountDirectoryBytes: 50 << 20)) {
    let flood = payload(disk, "for i in range(100):\n    open(f'/mnt/f{i}', 'wb').write(b'x' * (5 << 20))\nprint('wrote all')", mount: fileMount)
    let written: Int64 = (try? Sandbox.Changes.OpenMountDirectory(path: fileMount)).flatMap { mountDir -> Int64? in
      defer { mountDir.close() }
      return try? mountDir.snapshot().entries.values.reduce(Int64(0)) { $0 + $1.size }
    } ?? -1
    t.expect(flood?.limitHit == .disk && flood?.stdoutText == "" && written < 200 << 20, "limits: many files in /mnt stop at the disk budget (50 MiB; \(written >> 20) MiB written of 500)", "\(String(describing: flood?.limitHit))")
    shell("rm -f '\(fileMount)'/f*")
  }
  let crash = payload(sandbox, "import os\nos.abort()", mount: fileMount)
  t.expect(crash?.returnCode == -SIGABRT && crash?.changedFiles.contains(where: { $0.hasPrefix("core") }) == false, "limits: a crash leaves no core file in /mnt")
  let unfiltered = limited(SandboxLimits(), seccomp: false)
  let setuid = unfiltered.flatMap { payload($0, "import os\nopen('/mnt/tool', 'w').write('#!/bin/sh\\n')\nos.chmod('/mnt/tool', 0o6755)\nprint(oct(os.stat('/mnt/tool').st_mode & 0o7777))", mount: fileMount) }
  var toolInfo = stat()
  stat("\(fileMount)/tool", &toolInfo)
  t.expect(setuid?.stdoutText == "0o6755\n" && toolInfo.st_mode & 0o7777 == 0o755, "limits: setuid/setgid bits a payload sets in /mnt (seccomp relaxed) are cleared on the host", String(toolInfo.st_mode & 0o7777, radix: 8))
  if let small = limited(SandboxLimits(tmpfsBytes: 8 << 20)) {
    let fill = payload(small, "import errno\ntry:\n    open('/tmp/fill', 'wb').write(b'x' * (32 << 20)); print('WROTE')\nexcept OSError as e: print('FULL', e.errno == errno.ENOSPC)")
    t.expect(fill?.stdoutText == "FULL True\n", "limits: /tmp is capped at the tmpfs size", fill?.stdoutText ?? "")
  }
  let ordinary = payload(sandbox, """
    import asyncio, subprocess, threading, multiprocessing as mp
    box = []
    t = threading.Thread(target=box.append, args=(1,)); t.start(); t.join()
    out = subprocess.run(["/bin/echo", "sub"], capture_output=True, text=True).stdout.strip()
    a, b = mp.Pipe(); a.send("pipe"); got = b.recv()
    with mp.Pool(2) as pool: doubled = pool.map(abs, [-1, -2])
    print(box, out, got, doubled, asyncio.run(asyncio.sleep(0, result="async")))
    """, timeout: .seconds(60))
  t.expect(ordinary?.stdoutText == "[1] sub pipe [1, 2] async\n", "limits+seccomp: threads, subprocess, multiprocessing (pipes, pool) and asyncio still work", (ordinary?.stdoutText ?? "") + (ordinary?.stderrText ?? ""))
  let numpy = payload(sandbox, "import importlib.util\nif importlib.util.find_spec('numpy') is None: print('ABSENT')\nelse:\n    import numpy as np\n    print(int(np.arange(10).sum()), float(np.linalg.inv(np.eye(3)).trace()))", timeout: .seconds(60))
  if numpy?.stdoutText == "ABSENT\n" {
    t.skip("limits+seccomp: numpy works", "numpy is not installed in \(venv)")
  } else {
    t.expect(numpy?.stdoutText == "45 3.0\n", "limits+seccomp: numpy works under the default limits", (numpy?.stdoutText ?? "") + (numpy?.stderrText ?? ""))
  }
  let relaxed = limited(SandboxLimits(), seccomp: false)
  let ptrace = relaxed.flatMap { payload($0, "import ctypes\nprint(ctypes.CDLL(None).ptrace(0x4206, 1, None, None))") }
  t.expect(ptrace?.stdoutText == "0\n" && ptrace?.layers.contains("seccomp") == false, "seccomp: relaxing the layer is explicit and shows in the result's layers")
  t.expect(hello?.layers.contains("seccomp") == true && hello?.layers.contains("rlimits") == true, "layers: a run lists the layers that were active")
  if getuid() == 0 {
    t.expectError("limits: --max-processes is refused for root callers, not silently ignored", { if case .layerUnavailable = $0 { true } else { false } }) {
      () throws(SandboxError) in _ = try Sandbox(config: SandboxConfig(venvPath: venv, appArmor: .disabled, limits: SandboxLimits(maxProcesses: 50)))
    }
  } else if let few = limited(SandboxLimits(maxProcesses: 40)) {
    let bomb = payload(few, """
      import os, time
      started = failed = 0
      for _ in range(120):  # bounded by the test itself
          try:
              if os.fork() == 0:
                  time.sleep(2); os._exit(0)
              started += 1
          except OSError:
              failed += 1
      print("CAPPED" if failed and started < 40 else f"UNCAPPED {started}")
      """, timeout: .seconds(30))
    t.expect(bomb?.stdoutText == "CAPPED\n", "limits: a fork loop stops at the process limit (unprivileged caller)", bomb?.stdoutText ?? "")
  }
  shell("rm -rf '\(fileMount)'")

  // The startup gate.
  var gatedConfig = SandboxConfig(venvPath: venv, appArmor: .disabled)
  gatedConfig.requiresVerifiedHost = true
  let gated = try? Sandbox(config: gatedConfig)
  t.expectError("gate: a gated sandbox refuses to run before the suite has passed", { if case .selfTestGateClosed = $0 { true } else { false } }) {
    () throws(SandboxError) in _ = try gated?.run(.code("print(1)"))
  }
  do throws(SandboxError) {
    let failures = try SelfTestGate.verify(sandbox)
    try SelfTestGate.requirePassed()
    t.expect(failures.isEmpty, "gate: opens once the base suite passed on this host")
    let opened = try await gated?.run(.code("print(1)"))
    t.expect(opened?.stdoutText == "1\n", "gate: ... and then the gated sandbox runs")
  } catch {
    t.expect(false, "gate: opens once the base suite passed", error.description)
  }
  for directory in directories + [mount, daemonMount] { shell("rm -rf '\(directory)'") }
}

@main
enum UnitTests {
  static func main() async {
    if CommandLine.arguments.dropFirst().first == "--host-death-victim" { await runHostDeathVictim(CommandLine.arguments) }
    if CommandLine.arguments.dropFirst().first == "--session-victim" { await runSessionVictim(CommandLine.arguments) }
    if CommandLine.arguments.dropFirst().first == "--pool-victim" { await runPoolVictim(CommandLine.arguments) }
    if CommandLine.arguments.dropFirst().first == "--pool-exit-victim" { await runPoolExitVictim(CommandLine.arguments) }
    // The plan: how many checks (skips included) each part makes on every host, so a check that
    // silently vanishes fails the run. Change it together with the tests. The offline part
    // counts the plan's own check.
    let planned = (offline: 269, endToEnd: 138)
    let venv = Sandbox.Sys.environmentValue("SANDBOX_TEST_VENV").flatMap { $0.isEmpty ? nil : $0 }
    let plan = planned.offline + (venv == nil ? 1 : planned.endToEnd)
    print("1..\(plan)")
    var tally = Tally()
    let temp = Sandbox.Sys.temporaryDirectory()
    testGolden(&tally)
    testSeccomp(&tally)
    testAppArmor(&tally, temp: temp)
    testValidation(&tally, temp: temp)
    testSnapshots(&tally, temp: temp)
    testLargeSnapshots(&tally, temp: temp)
    testPureHelpers(&tally)
    testCgroupChecks(&tally, temp: temp)
    if let venv {
      await testEndToEnd(&tally, venv: venv, temp: temp)
      await testLifecycle(&tally, venv: venv, temp: temp)
      await testSessions(&tally, venv: venv, temp: temp)
      await testPools(&tally, venv: venv, temp: temp)
    } else {
      tally.skip("e2e: runs against real bwrap", "SANDBOX_TEST_VENV is not set")
    }
    let made = tally.passed + tally.failed + tally.skipped
    tally.expect(made + 1 == plan, "plan: \(plan) checks planned, \(made + 1) made")
    print("\(tally.passed) passed, \(tally.failed) failed, \(tally.skipped) skipped")
    exit(tally.failed == 0 ? 0 : 1)
  }
}
