// sandbox_extra_tests.swift — the extended self-test suite, run by `sandbox --extra-tests`.
//
// Optional companion of sandbox.swift: compile the two together and `--extra-tests` runs
// these probes after the base suite; leave this file out and sandbox.swift alone is complete.
// The file only adds data, through the extension point in sandbox.swift.

import Glibc

/// Skips a seccomp probe when the caller relaxed that layer.
private let seccompRelaxed: @Sendable (SelfTestContext) -> String? = { context in
  context.config.seccompEnabled ? nil : "the seccomp layer is relaxed (--no-seccomp)"
}

/// keyctl's number on this architecture, from the filter's own table.
private let keyctlNumber: UInt32 =
  Sandbox.Seccomp.Filter.Architecture.native.flatMap { architecture in
    Sandbox.Seccomp.Filter.deniedCalls.first { $0.name == "keyctl" }?.number(architecture)
  } ?? 0

extension Sandbox.ExtraTests {
  static var extendedSuite: [SelfTest]? {
    [
      SelfTest(
        "seccomp: every denied system call fails with its errno", layer: .seccomp, expect: "DENIED",
        python: """
          import ctypes
          libc = ctypes.CDLL(None, use_errno=True)
          libc.syscall.restype = ctypes.c_long
          wrong = []
          bad = ctypes.c_long(-1)  # every argument invalid: harmless even if a call got through
          for name, (number, expected) in {SECCOMP_DENIED}.items():
              ctypes.set_errno(0)
              result = libc.syscall(number, bad, bad, bad, bad, bad, bad)
              err = ctypes.get_errno()
              if result != -1 or err != expected:
                  wrong.append(f"{name}={result}/{err}")
          print("ALLOWED " + " ".join(wrong) if wrong else "DENIED")
          """,
        skipReason: seccompRelaxed),
      SelfTest(
        "seccomp: raw packet and vsock sockets are refused", layer: .seccomp, expect: "DENIED",
        python: """
          import socket
          allowed = []
          for family in (17, 40, 4):  # AF_PACKET, AF_VSOCK, AF_IPX
              try:
                  socket.socket(family, socket.SOCK_RAW if family == 17 else socket.SOCK_STREAM).close()
                  allowed.append(family)
              except OSError as e:
                  if e.errno != 97:  # EAFNOSUPPORT from the filter
                      allowed.append(f"{family}:{e.errno}")
          print("ALLOWED " + str(allowed) if allowed else "DENIED")
          """,
        skipReason: seccompRelaxed),
      SelfTest(
        "TIOCSTI with high bits set in the request is refused too", layer: .seccomp, expect: "BLOCKED",
        python: """
          import ctypes, os
          libc = ctypes.CDLL(None, use_errno=True)
          r, w = os.pipe()  # not a tty: without the filter the kernel would say ENOTTY
          result = libc.ioctl(r, ctypes.c_ulong(0xDEAD000000005412), ctypes.c_char_p(b"x"))
          print("BLOCKED" if result == -1 and ctypes.get_errno() == 1 else f"ALLOWED {result}/{ctypes.get_errno()}")
          """,
        skipReason: seccompRelaxed),
      SelfTest(
        "the caller's session keyring is unreadable", layer: .seccomp, expect: "BLOCKED",
        python: """
          import ctypes
          libc = ctypes.CDLL(None, use_errno=True)
          KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING = 0, -3
          result = libc.syscall({KEYCTL}, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0)
          print("READABLE " + str(result) if result >= 0 else "BLOCKED " + str(ctypes.get_errno()))
          """.replacing("{KEYCTL}", with: String(keyctlNumber)),
        skipReason: seccompRelaxed),
      SelfTest(
        "core dumps are off and open files are capped", layer: .limits, expect: "LIMITED",
        python: """
          import resource
          core = resource.getrlimit(resource.RLIMIT_CORE)
          files = resource.getrlimit(resource.RLIMIT_NOFILE)
          print("LIMITED" if core == (0, 0) and files[1] <= {OPEN_FILES} else f"UNLIMITED core={core} files={files}")
          """),
      SelfTest(
        "a memory bomb ends in MemoryError at the memory limit", layer: .limits, expect: "CONTAINED",
        python: """
          limit = {MEMORY_LIMIT}
          if not limit:
              print("SKIP no memory limit configured")
              raise SystemExit
          try:
              block = bytearray(limit + (256 << 20))  # one allocation past the limit; never touched
              print("ALLOCATED", len(block))
          except MemoryError:
              print("CONTAINED")
          """),
      SelfTest(
        "TIOCSTI cannot inject into a terminal (no controlling terminal)", layer: .namespaces,
        expect: "BLOCKED",
        python: """
          import fcntl, os, termios
          try:
              fd = os.open("/dev/tty", os.O_RDWR)
          except OSError as e:
              print("BLOCKED no controlling terminal", e.errno)
              raise SystemExit
          try:
              fcntl.ioctl(fd, termios.TIOCSTI, b"x")
              print("INJECTED")
          except OSError as e:
              print("BLOCKED", e.errno)
          """),
      SelfTest(
        "a nested user namespace cannot be created", layer: .namespaces, expect: "BLOCKED",
        python: """
          import ctypes, errno
          libc = ctypes.CDLL(None, use_errno=True)
          CLONE_NEWUSER = 0x10000000
          result = libc.unshare(CLONE_NEWUSER)
          err = ctypes.get_errno()
          # EPERM: the filter; ENOSPC: bwrap's --disable-userns (no user namespaces left to make).
          print("CREATED" if result == 0 else "BLOCKED" if err in (errno.EPERM, errno.ENOSPC) else "UNEXPECTED errno %d" % err)
          """),
      SelfTest(
        "ptrace of pid 1 (bwrap's init) is refused", layer: .seccomp, expect: "BLOCKED",
        python: """
          import ctypes, errno
          libc = ctypes.CDLL(None, use_errno=True)
          PTRACE_SEIZE = 0x4206  # attaches without stopping the tracee
          result = libc.ptrace(PTRACE_SEIZE, 1, None, None)
          err = ctypes.get_errno()
          print("ATTACHED" if result == 0 else "BLOCKED" if err == errno.EPERM else "UNEXPECTED errno %d" % err)
          """,
        skipReason: seccompRelaxed),
      SelfTest(
        "process_vm_readv of pid 1 is refused", layer: .seccomp, expect: "BLOCKED",
        python: """
          import ctypes
          libc = ctypes.CDLL(None, use_errno=True)
          class IoVec(ctypes.Structure):
              _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
          buf = ctypes.create_string_buffer(8)
          local = IoVec(ctypes.cast(buf, ctypes.c_void_p), 8)
          remote = IoVec(0x400000, 8)
          result = libc.process_vm_readv(1, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
          err = ctypes.get_errno()
          # EFAULT means the call was allowed and only the address was bad.
          print("ALLOWED" if result >= 0 or err == 14 else "BLOCKED " + str(err))
          """,
        skipReason: seccompRelaxed),
      SelfTest(
        "mknod of a device fails", layer: .namespaces, expect: "BLOCKED",
        python: """
          import errno, os, stat
          try:
              os.mknod("/tmp/sda", 0o600 | stat.S_IFBLK, os.makedev(8, 0))
              print("CREATED")
          except OSError as e:
              # EPERM: no CAP_MKNOD; anything else (EEXIST, ENOSPC) proves nothing.
              print("BLOCKED" if e.errno == errno.EPERM else "UNEXPECTED errno %d" % e.errno)
          """),
      SelfTest(
        "a symlink planted in /mnt does not reach host files through the sandbox", layer: .mounts,
        expect: "CONTAINED",
        python: """
          import os
          os.symlink("/etc/shadow", "/mnt/shadow-link")
          os.symlink("{MARKER}", "/mnt/marker-link")
          reached = []
          for link in ("/mnt/shadow-link", "/mnt/marker-link"):
              try:
                  os.listdir(link) if os.path.isdir(link) else open(link).read(1)
                  reached.append(link)
              except OSError:
                  pass
          print("REACHED " + " ".join(reached) if reached else "CONTAINED")
          """),
      SelfTest(
        "a hard link to a file outside /mnt cannot be made", layer: .mounts, expect: "BLOCKED",
        python: """
          import os
          try:
              os.link("/etc/passwd", "/mnt/passwd-link")
              print("LINKED")
          except OSError as e:
              print("BLOCKED", e.errno)
          """),
      SelfTest(
        "a daemonised grandchild does not outlive the run", layer: .namespaces, expect: "STARTED",
        python: """
          import os, time
          if os.fork() == 0:
              os.setsid()
              if os.fork() == 0:
                  fd = os.open("/mnt/heartbeat", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                  while True:  # a tight loop: any life after the run shows at once
                      os.write(fd, b"x")
              os._exit(0)
          deadline = time.monotonic() + 10
          while time.monotonic() < deadline and not (os.path.exists("/mnt/heartbeat") and os.path.getsize("/mnt/heartbeat")):
              time.sleep(0.001)
          print("STARTED" if os.path.getsize("/mnt/heartbeat") else "NEVER_RAN")
          """,
        hostCheck: { _, directory in
          // The run has returned: the heartbeat must have started, and must never grow again.
          func size() -> Int {
            var info = stat()
            return lstat("\(directory)/heartbeat", &info) == 0 ? Int(info.st_size) : 0
          }
          let first = size()
          guard first > 0 else { return "the grandchild never ran, so its death proves nothing" }
          for _ in 0..<50 {
            usleep(2_000)
            if size() != first { return "the grandchild kept writing after the run returned" }
          }
          return nil
        }),
      SelfTest(
        "scheduling calls reach only the caller itself (pid 1 cannot be demoted)", layer: .seccomp, expect: "CONFINED",
        python: """
          import os
          reached = []
          for name, call in (
              ("sched_setscheduler(1)", lambda: os.sched_setscheduler(1, os.SCHED_IDLE, os.sched_param(0))),
              ("setpriority(PROCESS, 1)", lambda: os.setpriority(os.PRIO_PROCESS, 1, 19)),
              ("setpriority(PGRP, 0)", lambda: os.setpriority(os.PRIO_PGRP, 0, 19)),
              ("setpriority(USER, 0)", lambda: os.setpriority(os.PRIO_USER, 0, 19)),
              ("sched_setaffinity(1)", lambda: os.sched_setaffinity(1, {0})),
              ("sched_setparam(1)", lambda: os.sched_setparam(1, os.sched_param(0))),
              ("prlimit(1, NOFILE)", lambda: __import__("resource").prlimit(1, __import__("resource").RLIMIT_NOFILE, (3, 3))),
          ):
              try:
                  call()
                  reached.append(name)
              except OSError as e:
                  if e.errno != 1:
                      reached.append(f"{name}:{e.errno}")
          try:  # control: the caller itself, named as 0, still may; and reading pid 1's limits
              os.setpriority(os.PRIO_PROCESS, 0, 5)
              os.sched_setaffinity(0, os.sched_getaffinity(0))
              import resource
              resource.prlimit(1, resource.RLIMIT_NOFILE)
              resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
          except OSError as e:
              reached.append(f"self refused {e.errno}")
          print("REACHED " + " ".join(reached) if reached else "CONFINED")
          """,
        skipReason: seccompRelaxed),
      SelfTest(
        "system calls newer than the filter's table fail with ENOSYS", layer: .seccomp, expect: "ENOSYS",
        python: """
          import ctypes
          libc = ctypes.CDLL(None, use_errno=True)
          libc.syscall.restype = ctypes.c_long
          bad = []
          for number in ({HIGHEST} + 1, {HIGHEST} + 30, 1000):
              ctypes.set_errno(0)
              if libc.syscall(number, 0, 0, 0) != -1 or ctypes.get_errno() != 38:
                  bad.append(f"{number}:{ctypes.get_errno()}")
          print("OPEN " + " ".join(bad) if bad else "ENOSYS")
          """.replacing("{HIGHEST}", with: String(Sandbox.Seccomp.Filter.Architecture.native?.highestReviewed ?? 0)),
        skipReason: seccompRelaxed),
    ]
  }
}
