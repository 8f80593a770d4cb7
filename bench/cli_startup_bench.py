"""How fast `llmcloud --help` (and each command's --help) starts, against `python -c pass`.

Runs every case interleaved, several rounds, in one run on the same machine, and prints the
median of each and its ratio to bare Python start-up. Goal: median <= 0.3 s on 2 cores.

    python bench/cli_startup_bench.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "llmcloud --help": ["llmcloud", "--help"],
    "llmcloud up --help": ["llmcloud", "up", "--help"],
    "llmcloud plan --help": ["llmcloud", "plan", "--help"],
    "llmcloud keys create --help": ["llmcloud", "keys", "create", "--help"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    exe = shutil.which("llmcloud")
    if exe is None:
        sys.exit("llmcloud is not on PATH: pip install -e . first")
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.rounds):
        for name, command in CASES.items():
            command = [exe, *command[1:]] if command[0] == "llmcloud" else command
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["python -c pass"])
    print(f"{'case':<30} {'median s':>9} {'p90 s':>7} {'x python':>9}")
    worst = 0.0
    for name, samples in times.items():
        median = statistics.median(samples)
        p90 = sorted(samples)[int(0.9 * (len(samples) - 1))]
        if name != "python -c pass":
            worst = max(worst, median)
        print(f"{name:<30} {median:>9.3f} {p90:>7.3f} {median / base:>9.1f}")
    verdict = "meets" if worst <= 0.3 else "MISSES"
    print(f"slowest --help median {worst:.3f} s: {verdict} the 0.3 s goal")


if __name__ == "__main__":
    main()
