#!/usr/bin/env python3
"""How this machine's disk handles concurrent durable writes.

Each writer owns a file; per round it writes PAGES pages of 4 KiB at
scattered offsets, then fdatasync; 200 rounds 2 ms apart. Prints the p50
and p90 of a round for 1, 3 and 5 writers, with 1 page (an append-only
log's flush) and 6 pages (about what a redb commit of one login record
writes). A devnet's nodes share one disk, as they share the cores: this
shows what that costs a login's commitment. Usage:
    python3 scripts/flush-contention.py [DIR]   (default: a temporary dir)
"""
import os
import sys
import tempfile
import threading
import time


def writer(path, rounds, pages, times):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.posix_fallocate(fd, 0, 1 << 20)
        page = os.urandom(4096)
        for i in range(rounds):
            start = time.perf_counter()
            for p in range(pages):
                os.pwrite(fd, page, ((i * pages + p) * 37 % 256) * 4096)
            os.fdatasync(fd)
            times.append(time.perf_counter() - start)
            time.sleep(0.002)
    finally:
        os.close(fd)


def main():
    base = sys.argv[1] if len(sys.argv) > 1 else None
    with tempfile.TemporaryDirectory(dir=base) as directory:
        for pages in (1, 6):
            for writers in (1, 3, 5):
                times = [[] for _ in range(writers)]
                threads = [
                    threading.Thread(target=writer, args=(os.path.join(directory, f"w{i}"), 200, pages, times[i]))
                    for i in range(writers)
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                every = sorted(t for per in times for t in per)
                p50, p90 = every[len(every) // 2], every[len(every) * 9 // 10]
                print(f"{pages} page(s) per flush, {writers} writer(s): p50 {p50 * 1e3:.2f} ms, p90 {p90 * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
