#!/usr/bin/env python3
"""How this machine's disk handles concurrent durable writes.

Each writer owns a file; per round it writes PAGES pages of 4 KiB at
scattered offsets, then fdatasync; 200 rounds 2 ms apart. Prints the p50
and p90 of a round for 1, 3 and 5 writers, with 1 page (an append-only
log's flush) and 6 pages (about what a redb commit of one login record
writes). A devnet's nodes share one disk, as they share the cores: this
shows what that costs a login's commitment.

A second table compares the layouts a write-ahead log of login records
could have: 400-byte records written one after another, each followed by
fdatasync, into a file that grows with every write (what
crates/store/src/login_log.rs does), a file zeroed beforehand, and a file
allocated beforehand with posix_fallocate (neither changes the file's
size on a write). 1 and 5 writers in step. Usage:
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


def log_writer(path, layout, rounds, barrier, times):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        size = rounds * 400
        if layout == "zeroed":
            os.pwrite(fd, bytes(size), 0)
            os.fsync(fd)
        elif layout == "fallocated":
            os.posix_fallocate(fd, 0, size)
            os.fsync(fd)
        record = os.urandom(400)
        for i in range(rounds):
            barrier.wait()
            start = time.perf_counter()
            os.pwrite(fd, record, i * 400)
            os.fdatasync(fd)
            times.append(time.perf_counter() - start)
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
        for layout in ("growing", "zeroed", "fallocated"):
            for writers in (1, 5):
                times = [[] for _ in range(writers)]
                barrier = threading.Barrier(writers)
                threads = [
                    threading.Thread(
                        target=log_writer,
                        args=(os.path.join(directory, f"log{i}"), layout, 1000, barrier, times[i]),
                    )
                    for i in range(writers)
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                every = sorted(t for per in times for t in per)
                p50, p90 = every[len(every) // 2], every[len(every) * 9 // 10]
                mean = sum(every) / len(every)
                print(
                    f"400-byte records, {layout} file, {writers} writer(s): "
                    f"p50 {p50 * 1e3:.3f} ms, p90 {p90 * 1e3:.3f} ms, mean {mean * 1e3:.3f} ms"
                )


if __name__ == "__main__":
    main()
