// sandbox_extra_tests.swift — the extended self-test suite, run by `sandbox --extra-tests`.
//
// Optional companion of sandbox.swift: compile the two together and `--extra-tests` runs
// these probes after the base suite; leave this file out and sandbox.swift alone is complete.
// The file only adds data, through the extension point in sandbox.swift.

import Glibc

extension ExtraTests {
  static var extendedSuite: [SelfTest]? {
    [
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
          import ctypes
          libc = ctypes.CDLL(None, use_errno=True)
          CLONE_NEWUSER = 0x10000000
          print("CREATED" if libc.unshare(CLONE_NEWUSER) == 0 else "BLOCKED " + str(ctypes.get_errno()))
          """),
      SelfTest(
        "ptrace of pid 1 (bwrap's init) is refused", layer: .seccomp, expect: "BLOCKED",
        python: """
          import ctypes
          libc = ctypes.CDLL(None, use_errno=True)
          PTRACE_SEIZE = 0x4206  # attaches without stopping the tracee
          result = libc.ptrace(PTRACE_SEIZE, 1, None, None)
          print("ATTACHED" if result == 0 else "BLOCKED " + str(ctypes.get_errno()))
          """,
        knownGap: "no seccomp filter yet; pid 1 is bwrap's own init, same uid, no capabilities to gain"),
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
        knownGap: "no seccomp filter yet; pid 1 is bwrap's own init inside the sandbox"),
      SelfTest(
        "mknod of a device fails", layer: .namespaces, expect: "BLOCKED",
        python: """
          import os, stat
          try:
              os.mknod("/tmp/sda", 0o600 | stat.S_IFBLK, os.makedev(8, 0))
              print("CREATED")
          except OSError as e:
              print("BLOCKED", e.errno)
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
                  while True:
                      with open("/mnt/heartbeat", "a") as f:
                          f.write("x")
                      time.sleep(0.05)
              os._exit(0)
          time.sleep(0.2)
          print("STARTED")
          """,
        hostCheck: { _, directory in
          let path = "\(directory)/heartbeat"
          let first = readSmallFile(path)?.count ?? 0
          usleep(300_000)
          let second = readSmallFile(path)?.count ?? 0
          return second > first ? "the grandchild kept writing after the run returned" : nil
        }),
    ]
  }
}
