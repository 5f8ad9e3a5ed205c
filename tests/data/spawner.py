"""A command tool that leaves processes behind on purpose (tests/test_processes.py).

usage: spawner.py PIDFILE MODE

MODE "escape": double-fork a daemon into its own session (the classic way
out of a process group), wait until it has been orphaned, then exit. The
daemon writes "<pid> <parent pid once orphaned>" to PIDFILE and sleeps.

MODE "hang": start a child in the same group and a daemon as above, write
"<own pid> <child pid> <daemon pid>" to PIDFILE, then hang.
"""

import os
import sys
import time


def daemon(pidfile: str, then_write: bool) -> int:
    """Double fork; returns the daemon's pid in the caller."""
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.setsid()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            # Wait to be orphaned (the session leader that forked us is the
            # middle process), so the parent seen is whoever adopted us.
            while os.getppid() == os.getsid(0):
                time.sleep(0.01)
            if then_write:
                with open(pidfile + ".tmp", "w") as f:
                    f.write(f"{os.getpid()} {os.getppid()}")
                os.rename(pidfile + ".tmp", pidfile)
            os.write(write_end, b"x")
            time.sleep(120)
            os._exit(0)
        os._exit(0)
    os.close(write_end)
    os.waitpid(middle, 0)
    os.read(read_end, 1)  # the daemon is orphaned (and has written the file)
    return int(open(pidfile).read().split()[0]) if then_write else 0


def main() -> None:
    pidfile, mode = sys.argv[1], sys.argv[2]
    if mode == "escape":
        daemon(pidfile, then_write=True)
        print("daemon started")
        return
    if mode == "hang":
        import subprocess

        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        escaped = daemon(pidfile + ".daemon", then_write=True)
        with open(pidfile + ".tmp", "w") as f:
            f.write(f"{os.getpid()} {child.pid} {escaped}")
        os.rename(pidfile + ".tmp", pidfile)
        time.sleep(120)
        return
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
