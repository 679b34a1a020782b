"""Another tracer, holding the threads whose ids are its arguments: seized as strace or a
second sampler would (never stopped), and every signal one of them stops for handed on at once,
as strace does, so that whatever goes missing in a test went missing in the pauser. Prints
"holding" once it holds them all ("seize failed ERRNO" and exit 1 if it cannot).
"""

import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
for tid in map(int, sys.argv[1:]):
    if libc.ptrace(0x4206, tid, None, None) != 0:  # PTRACE_SEIZE
        print("seize failed", ctypes.get_errno(), flush=True)
        sys.exit(1)
print("holding", flush=True)
while True:
    try:
        tid, status = os.waitpid(-1, 0x40000000)  # __WALL
    except ChildProcessError:
        break
    if os.WIFSTOPPED(status):
        signum = os.WSTOPSIG(status) if status >> 16 == 0 else 0
        libc.ptrace(7, tid, None, ctypes.c_void_p(signum))  # PTRACE_CONT
time.sleep(3600)
