#!/usr/bin/env python3
"""What it costs this machine to wake a process on the other core.

A login is about a hundred hand-offs between six processes (the client
and five nodes), and on this machine a hand-off between cores costs far
more than one on the same core. This measures it: two processes pass a
byte back and forth through two pipes, each round trip two wake-ups,
- both pinned to one core (a wake-up is a plain context switch);
- free to use both cores (the scheduler wakes each on the other, idle
  core: an interrupt between the cores, through the hypervisor).

Usage: python3 scripts/wakeup-cost.py [round trips, default 20000]
"""

import os
import sys
import time


def ping_pong(rounds, pin):
    to_child, to_parent = os.pipe(), os.pipe()
    child = os.fork()
    if child == 0:
        if pin:
            os.sched_setaffinity(0, {0})
        for _ in range(rounds):
            os.read(to_child[0], 1)
            os.write(to_parent[1], b"x")
        os._exit(0)
    os.sched_setaffinity(0, {0} if pin else set(range(os.cpu_count())))
    start = time.perf_counter()
    for _ in range(rounds):
        os.write(to_child[1], b"x")
        os.read(to_parent[0], 1)
    elapsed = time.perf_counter() - start
    os.waitpid(child, 0)
    for fd in (*to_child, *to_parent):
        os.close(fd)
    return elapsed / rounds * 1e6


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    print(f"{os.cpu_count()} cores; {rounds} round trips of one byte between two processes (two wake-ups each)")
    print(f"  both on one core:            {ping_pong(rounds, True):6.1f} us per round trip")
    print(f"  free to use every core:      {ping_pong(rounds, False):6.1f} us per round trip")


if __name__ == "__main__":
    main()
