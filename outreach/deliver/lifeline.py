"""Imported first by the letter printer's forkserver: it dies with the run that started it.

multiprocessing's forkserver outlives a run killed with SIGKILL, and so would the layout
workers forked from it, writing letters for a run that no longer exists. The run names itself
in OUTREACH_RUN_PID before it starts the forkserver; a forkserver whose parent is that run asks
the kernel for SIGKILL when the run dies. Its workers ask the same of the forkserver
(outreach.files.bind_to_parent), so the whole tree goes with the run, however it dies.
"""

from __future__ import annotations

import os

from outreach.files import bind_to_parent

RUN_PID_VARIABLE = "OUTREACH_RUN_PID"

# Only in the forkserver itself: its parent is the run that named itself. Any other process
# importing this module (the run, a worker forked from the forkserver) is left alone.
if os.environ.get(RUN_PID_VARIABLE) == str(os.getppid()):
    bind_to_parent(os.getppid())
