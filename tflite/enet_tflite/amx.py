"""Keeping XNNPACK's int8 kernels off Intel AMX, where they are slower for ENet (a seccomp filter)."""

import ctypes
import errno
import os
import platform

# Linux x86-64: arch_prctl's syscall number and the request that asks to use AMX tile data
# (asm/prctl.h), seccomp's syscall number and its constants (linux/seccomp.h, linux/filter.h).
_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM = 158, 0x1023
_SYS_SECCOMP, _SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC = 317, 1, 1
_AUDIT_ARCH_X86_64 = 0xC000003E
_PR_SET_NO_NEW_PRIVS = 38



def disable_amx():
    """Keeps XNNPACK's int8 kernels off Intel AMX for the rest of this process.

    On CPUs with AMX (Intel Xeon Sapphire Rapids and later) XNNPACK runs int8 convolutions with
    AMX tile kernels, which are slower for ENet's narrow layers than its AVX-512 VNNI kernels:
    on a 2-core Xeon, int8 ENet(19) at 360x640 takes 51 ms with AMX and 27.5 ms without
    (fp32: 35 ms either way; docs/benchmarks.md). Linux lets a process use AMX only once it has
    asked (`arch_prctl(ARCH_REQ_XCOMP_PERM)`); this installs a seccomp filter, on every thread,
    that refuses that request, so XNNPACK falls back to VNNI. fp32 and fp16 models do not use
    AMX in XNNPACK and run as before.

    Call it before the first `Segmenter` (or LiteRT interpreter) of the process: XNNPACK reads
    the CPU's features once. It cannot be undone, and it holds for the threads and child
    processes started later, including other libraries that have not asked for AMX yet
    (oneDNN in TensorFlow or PyTorch). That is why it is a choice (`--no_amx`), not the default.

    Returns:
        True if the filter was installed; False on anything but Linux on x86-64, which has no
        AMX to turn off.

    Raises:
        OSError: if the kernel refuses the filter (e.g. a kernel built without seccomp).

    Example:

    >>> disable_amx()                 # first, before any model is loaded
    True
    >>> segmenter = Segmenter("enet_int8.tflite", num_threads=2)
    """
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return False

    class Instruction(ctypes.Structure):  # struct sock_filter
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]

    class Program(ctypes.Structure):  # struct sock_fprog
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Instruction))]

    load, jump_if_equal, give = 0x20, 0x15, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_RET|K
    allow, refuse = 0x7FFF0000, 0x00050000 | errno.EPERM  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO
    instructions = [
        Instruction(load, 0, 0, 4),  # seccomp_data.arch
        Instruction(jump_if_equal, 0, 5, _AUDIT_ARCH_X86_64),
        Instruction(load, 0, 0, 0),  # seccomp_data.nr
        Instruction(jump_if_equal, 0, 3, _SYS_ARCH_PRCTL),
        Instruction(load, 0, 0, 16),  # the low 32 bits of args[0]: the request
        Instruction(jump_if_equal, 0, 1, _ARCH_REQ_XCOMP_PERM),
        Instruction(give, 0, 0, refuse),
        Instruction(give, 0, 0, allow),
    ]
    program = Program(len(instructions), (Instruction * len(instructions))(*instructions))
    libc = ctypes.CDLL(None, use_errno=True)
    # An unprivileged process may install a filter only once it cannot gain privileges (setuid).
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or libc.syscall(
        _SYS_SECCOMP, _SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC, ctypes.byref(program)
    ) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"cannot keep XNNPACK off AMX: the kernel refused the seccomp filter ({os.strerror(code)})")
    return True
