"""Code objects that live a few ms each: every loop compiles, runs and drops new ones.

Iteration i runs f_<i>, defined at line (i % 40) + 1 of a module named "<gen i>". Freed code
objects' addresses get reused by the next ones, so a reader that trusts a cached code object
by its address alone reports an old iteration's name after a newer one.
"""

import time

print("ready", flush=True)
for i in range(1000000):
    source = "\n" * (i % 40) + "def f_%d():\n    time.sleep(0.003)\nf_%d()\n" % (i, i)
    exec(compile(source, "<gen %d>" % i, "exec"), {"time": time})
