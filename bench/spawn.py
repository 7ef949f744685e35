"""Run one command and print its wall time, CPU time, exit status and max RSS as one JSON line.

usage: spawn.py DIR ARGV...   (DIR: the working directory; output goes to /dev/null)

bench/run.py measures every cold start through this small process: on Linux a child's
`ru_maxrss` starts at the size of the process that spawned it (the kernel keeps the larger
of the two across exec), so children of the benchmark itself, which holds the corpora, would
all report its size.
"""

import json
import os
import sys
import time


def main() -> None:
    folder, argv = sys.argv[1], sys.argv[2:]
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.chdir(folder)
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ,
                         file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 1),
                                       (os.POSIX_SPAWN_DUP2, devnull, 2)])
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    print(json.dumps({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
                      "exit": os.waitstatus_to_exitcode(status), "maxrss_mb": usage.ru_maxrss / scale}))


if __name__ == "__main__":
    main()
