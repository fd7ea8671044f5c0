"""Run a command and print its peak RSS in bytes on the last line of standard error.

A child's ``ru_maxrss`` counts the memory it had before ``exec``: a child forked from a big
benchmark process would report the benchmark's size.  This small process forks the command
from itself instead.  ``python bench/peak.py CMD [ARG...]``.
"""

import os
import sys

pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss * 1024, file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
