"""
The cyclic garbage collector's policy for the web process, applied once as
it starts serving (at its first connection, by ``timesheet.web.server``'s
protocol, which the deployment's uvicorn runs).

Each open live stream holds about 200 objects the collector tracks (its
coroutines and tasks, uvicorn's, Django's request and response): ten
thousand streams are two million of them, and a full collection walks them
all while holding the GIL, which stalls every request and every stream for
as long (measured by ``bench/stream.py``: 12 full passes of up to 2.8 s in
50 s, 24 s of the 50, with 10,000 streams under Python's default thresholds
of 700, 10 and 10). Python starts a full pass once ten middle passes have
run since the last and the objects promoted since then reach a quarter of
the old ones; with a young generation of 700 allocations, a poll's or a
request's short-lived objects are promoted before they die, and that quarter
is reached in seconds.

With a young generation of ``YOUNG`` allocations, most of what a request or
a poll allocates is freed by reference counting before a young pass sees it,
and a young pass stays short (it walks at most that many objects); a middle
pass, after ``MIDDLE`` young ones, walks only what they kept. A full pass
needs ``OLD`` middle passes since the last: 100 million allocations, many
minutes of a busy process's life, instead of a few seconds; it still walks
every stream's objects (2.5 s for 10,000 streams on a loaded 2-core machine,
``bench/stream.py``), but rarely. A stream's objects are not frozen
(``gc.freeze``): a closed stream leaves cycles (about a hundred objects
each), which only a full pass frees, and frozen ones would never be.
"""

import gc

YOUNG = 50_000
MIDDLE = 20
OLD = 100
THRESHOLDS = (YOUNG, MIDDLE, OLD)


_applied = False


def apply() -> tuple[int, int, int]:
    """Set the collector's thresholds to ``THRESHOLDS``; return the ones it had."""
    global _applied
    previous: tuple[int, int, int] = gc.get_threshold()
    gc.set_threshold(*THRESHOLDS)
    _applied = True
    return previous


def apply_once() -> bool:
    """
    ``apply()`` unless it already ran in this process (thresholds set since
    by someone else are theirs to keep); return whether it ran now.
    """
    if _applied:
        return False
    apply()
    return True
