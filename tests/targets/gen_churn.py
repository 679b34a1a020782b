"""A generator resumed and suspended every fraction of a microsecond, forever.

The stack is <module> -> crunch -> <genexpr> while the generator runs and <module> -> crunch
while `sum` is between two items. A reader that returns a <genexpr> frame without crunch
below it read the thread state while the generator ran and its frame after it yielded.
"""


def crunch():
    return sum(i * i for i in range(200))  # GEN_LINE


print("ready", flush=True)
while True:
    crunch()  # LOOP_LINE
