#!/usr/bin/env python3
"""Runs a command under a seccomp filter that refuses what a container runtime's default profile
refuses (Docker's: unshare, setns and clone with namespace flags get EPERM; clone3 gets ENOSYS,
so that libc falls back to clone), for the tests of the sandbox's diagnosis. With --mount, it
refuses mount(2) instead (EPERM), as an AppArmor profile such as docker-default does.
Usage: deny_namespaces.py [--mount] COMMAND..."""
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
NR_unshare, NR_clone, NR_clone3, NR_setns, NR_mount = 272, 56, 435, 308, 165  # x86_64
mount_only = sys.argv[1] == "--mount"
if mount_only:
    del sys.argv[1]
AUDIT_ARCH_X86_64 = 0xC000003E
NS_FLAGS = 0x10000000 | 0x20000000 | 0x40000000 | 0x04000000 | 0x08000000 | 0x00020000 | 0x02000000 | 0x00000080
RET_ALLOW, RET_ERRNO, RET_KILL = 0x7FFF0000, 0x00050000, 0x80000000
EPERM, ENOSYS = 1, 38
def stmt(code, k): return struct.pack("HBBI", code, 0, 0, k)
def jump(code, k, jt, jf): return struct.pack("HBBI", code, jt, jf, k)
LD, JEQ, JSET, RET = 0x20, 0x15, 0x45, 0x06
prog = [
    stmt(LD, 4), jump(JEQ, AUDIT_ARCH_X86_64, 1, 0), stmt(RET, RET_KILL),  # 0-2: x86_64 only
    stmt(LD, 0),                                                             # 3: the call number
    jump(JEQ, NR_unshare, 6, 0),                                             # 4: -> 11 EPERM
    jump(JEQ, NR_setns, 5, 0),                                               # 5: -> 11 EPERM
    jump(JEQ, NR_clone3, 6, 0),                                              # 6: -> 13 ENOSYS
    jump(JEQ, NR_clone, 1, 0),                                               # 7: -> 9
    stmt(RET, RET_ALLOW),                                                    # 8
    stmt(LD, 16), jump(JSET, NS_FLAGS, 0, 1),                                # 9-10: clone flags
    stmt(RET, RET_ERRNO | EPERM),                                            # 11
    stmt(RET, RET_ALLOW),                                                    # 12
    stmt(RET, RET_ERRNO | ENOSYS),                                           # 13
]
if mount_only:
    prog = [
        stmt(LD, 4), jump(JEQ, AUDIT_ARCH_X86_64, 1, 0), stmt(RET, RET_KILL),
        stmt(LD, 0), jump(JEQ, NR_mount, 0, 1), stmt(RET, RET_ERRNO | EPERM), stmt(RET, RET_ALLOW),
    ]
buf = b"".join(prog)
class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]
fprog = SockFprog(len(prog), buf)
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
assert libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
    sys.exit("seccomp: %s" % os.strerror(ctypes.get_errno()))
os.execvp(sys.argv[1], sys.argv[1:])
