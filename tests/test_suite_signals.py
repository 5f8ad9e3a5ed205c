"""The suite's own precondition for its Ctrl-C tests: what a test starts gets SIGINT.

Started in the background of a script (``pytest &``, nohup, a CI runner's
shell), the suite inherits SIGINT ignored, Python keeps it ignored, and so does
every asyncfc the tests start: their Ctrl-C tests then saw runs go on to exit 0
and servers that never stopped. conftest.py takes the signals back; this test
fails if that is lost (run it as ``bash -c 'pytest tests/test_suite_signals.py & wait'``).
"""

from __future__ import annotations

import subprocess
import sys


def test_a_process_a_test_starts_gets_ctrl_c():
    probe = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "True", done.stderr
