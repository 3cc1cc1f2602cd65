"""The calling thread's OpenMP worker team is let go (so the server's scheduler thread holds the only one)."""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch

from lmforge.models.openmp import one_call_at_a_time, release_openmp_threads


def threads_now() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task") or torch.get_num_threads() < 2,
                    reason="needs Linux and torch running 2+ threads")
def test_release_ends_the_calling_threads_workers():
    torch.randn(512, 512).exp().sum()  # a parallel region: this thread gets a team
    time.sleep(0.05)
    before = threads_now()
    assert release_openmp_threads()
    time.sleep(0.05)
    assert threads_now() < before  # its workers exited
    torch.randn(512, 512).exp().sum()  # and a new team comes when needed
    assert threads_now() >= before - 1


def test_one_call_at_a_time_serialises_calls_from_worker_threads():
    inside, most = [0], [0]

    @one_call_at_a_time
    def work(x: int) -> int:
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.01)
        inside[0] -= 1
        return 2 * x
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(work(i))) for i in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(results) == [0, 2, 4, 6, 8, 10] and most[0] == 1
