"""Code objects that live a short while each: every loop compiles, runs and drops new ones.

    python code_churn.py [SECONDS]      # how long each f_<i> sleeps, default 0.003

Iteration i runs f_<i>, defined at line (i % 40) + 1 of a module named "<gen i>". Freed code
objects' addresses get reused by the next ones (on <= 3.10, the module code of iteration i
is freed as exec returns and f_<i+1> is compiled into its place), so a reader that trusts a
code object by its address alone reports an old iteration's name after a newer one, and one
that loads a code object some time after copying the frame that points to it can name that
frame after the next iteration's function. A short SECONDS makes the second case frequent:
an iteration then often ends between the two.
"""

import sys
import time

pause = float(sys.argv[1]) if len(sys.argv) > 1 else 0.003
print("ready", flush=True)
for i in range(1000000):
    source = "\n" * (i % 40) + "def f_%d():\n    time.sleep(%r)\nf_%d()\n" % (i, pause, i)
    exec(compile(source, "<gen %d>" % i, "exec"), {"time": time})
