"""Time metasyn.synergy.phiid: all pairs at once against a one-pair-at-a-time loop, and peak memory on many heads.

    python benchmarks/phiid_benchmark.py                      # 272 heads x 60 prompts x 100 steps, then 1,024 heads
    python benchmarks/phiid_benchmark.py --heads 20 --prompts 3 --big-heads 64 --big-prompts 2   # a quick run

The one-pair loop calls ``phiid_pair`` per pair, as phyid's ``calc_PhiID`` is used; it is timed on a random sample
of pairs and extrapolated to all of them (the output says so). Peak memory of the large case is the resident set
size of a fresh child process, sampled every 5 ms during the call (Linux), next to its size before the call.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import threading
import time

import numpy as np
import torch

from metasyn.synergy.phiid import phiid_all_pairs, phiid_pair


def norm_like_series(prompts: int, heads: int, steps: int, seed: int = 0) -> np.ndarray:
    """Positive, skewed, autocorrelated series with a shared drive, like attention-head output norms."""
    rng = np.random.default_rng(seed)
    burn = 50
    noise = rng.standard_normal((prompts, heads, steps + burn))
    common = rng.standard_normal((prompts, 1, steps + burn))
    coupling = rng.uniform(0.2, 0.8, size=(1, heads, 1))
    persistence = rng.uniform(0.3, 0.9, size=(1, heads, 1))
    state = np.zeros((prompts, heads, steps + burn))
    for t in range(1, steps + burn):
        state[..., t] = persistence[..., 0] * state[..., t - 1] + coupling[..., 0] * common[..., t] + noise[..., t]
    scale = rng.uniform(0.2, 0.6, size=(1, heads, 1))
    offset = rng.uniform(1.0, 10.0, size=(1, heads, 1))
    return offset + np.exp(scale * state[..., burn:])


def time_all_pairs(series: np.ndarray, redundancy: str, repeats: int, workers: int | None) -> list[tuple[float, float]]:
    """(wall seconds, CPU seconds of all threads) per run."""
    times = []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        result = phiid_all_pairs(series, redundancy=redundancy, workers=workers)
        times.append((time.perf_counter() - start, time.process_time() - cpu))
        assert result.invalid_pairs.empty, result.invalid_pairs.head()
    return times


def time_pair_loop(series: np.ndarray, redundancy: str, sample: int, seed: int = 1) -> float:
    """Seconds per pair of the one-pair-at-a-time loop, measured on `sample` random (prompt, i < j) pairs."""
    rng = np.random.default_rng(seed)
    prompts, heads, _ = series.shape
    picks = [(rng.integers(prompts), *sorted(rng.choice(heads, 2, replace=False))) for _ in range(sample)]
    phiid_pair(series[0, 0], series[0, 1], redundancy=redundancy)  # warm-up
    start = time.perf_counter()
    for prompt, i, j in picks:
        phiid_pair(series[prompt, i], series[prompt, j], redundancy=redundancy)
    return (time.perf_counter() - start) / sample


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_case(heads: int, prompts: int, steps: int, workers: int | None, queue: multiprocessing.Queue) -> None:
    """Run in a fresh process, so what it holds is this case alone."""
    series = norm_like_series(prompts, heads, steps, seed=2)
    before = peak = resident_bytes()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.005):
            peak = max(peak, resident_bytes())

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    result = phiid_all_pairs(series, redundancy="MMI", workers=workers)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    peak = max(peak, resident_bytes())
    lifetime_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    output = sum(values.nbytes for values in result.atoms.values())
    queue.put((seconds, before, peak, lifetime_peak, output, len(result.invalid_pairs)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, default=272)
    parser.add_argument("--prompts", type=int, default=60)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each all-pairs case")
    parser.add_argument("--sample", type=int, default=200, help="pairs timed in the one-pair loop")
    parser.add_argument("--big-heads", type=int, default=1024, help="heads of the peak-memory case (0 skips it)")
    parser.add_argument("--big-prompts", type=int, default=4)
    parser.add_argument("--workers", type=int, default=None, help="phiid_all_pairs workers (default: torch threads)")
    args = parser.parse_args()

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads, workers={args.workers or torch.get_num_threads()}"
    )
    print("load average at start (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    series = norm_like_series(args.prompts, args.heads, args.steps)
    n_pairs = args.heads * (args.heads - 1) // 2
    total = n_pairs * args.prompts
    print(
        f"series: {args.prompts} prompts x {args.heads} heads x {args.steps} steps, float64, tau=1; "
        f"{n_pairs} pairs per prompt, {total} pair-series in all"
    )
    for redundancy in ("MMI", "CCS"):
        times = time_all_pairs(series, redundancy, args.repeats, args.workers)
        per_pair = time_pair_loop(series, redundancy, args.sample)
        loop = per_pair * total
        walls = [wall for wall, _ in times]
        best = min(walls)
        print(
            f"{redundancy} phiid_all_pairs (sts, rtr): "
            + ", ".join(f"{w:.2f} s (CPU {c:.2f} s)" for w, c in times)
            + f"; best {best:.2f} s, median {statistics.median(walls):.2f} s"
        )
        print(
            f"{redundancy} one-pair loop (phiid_pair, all 16 atoms): {per_pair * 1e3:.2f} ms/pair on {args.sample} "
            f"sampled pairs, extrapolated to {total} pairs: {loop:.0f} s ({loop / 3600:.2f} h)"
        )
        print(f"{redundancy} speed-up (extrapolated loop / best all-pairs): {loop / best:.0f}x")

    if args.big_heads:
        queue: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
        child = multiprocessing.get_context("spawn").Process(
            target=memory_case, args=(args.big_heads, args.big_prompts, args.steps, args.workers, queue)
        )
        child.start()
        seconds, before, peak, lifetime_peak, output, invalid = queue.get()
        child.join()
        big_pairs = args.big_heads * (args.big_heads - 1) // 2 * args.big_prompts
        mib = 2**20
        size = f"{args.big_prompts} prompts x {args.big_heads} heads x {args.steps} steps ({big_pairs} pair-series)"
        print(
            f"MMI {size}: "
            f"{seconds:.2f} s; RSS before the call {before / mib:.0f} MiB, peak during it {peak / mib:.0f} MiB "
            f"(+{(peak - before) / mib:.0f} MiB, of which result arrays {output / mib:.0f} MiB); "
            f"process lifetime peak {lifetime_peak / mib:.0f} MiB; invalid pairs {invalid}"
        )
    print("load average at end (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    sys.exit(main())
