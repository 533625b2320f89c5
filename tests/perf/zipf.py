#!/usr/bin/env python3
"""zipf.py POPULATION S WARM RUN OUT_WARM OUT_RUN [SEED]

Draws WARM + RUN queries from the lines of POPULATION (dnsperf "name type"
lines, already shuffled: line k is the name of popularity rank k+1) with
P(rank k) proportional to 1 / k**S (a Zipf distribution), writes the first WARM
to OUT_WARM (the cache warm-up) and the next RUN to OUT_RUN (the measured run),
and prints how many of the measured queries are first occurrences, i.e. cache
misses for a cache that kept everything it saw during warm-up and run.
"""
import itertools
import random
import sys


def main() -> None:
    population_file, s, warm, run, out_warm, out_run = sys.argv[1:7]
    s, warm, run = float(s), int(warm), int(run)
    seed = int(sys.argv[7]) if len(sys.argv) > 7 else 1
    with open(population_file) as f:
        population = f.read().splitlines()
    cum = list(itertools.accumulate(1.0 / (k ** s) for k in range(1, len(population) + 1)))
    rng = random.Random(seed)
    draws = rng.choices(range(len(population)), cum_weights=cum, k=warm + run)
    with open(out_warm, "w") as f:
        f.writelines(population[i] + "\n" for i in draws[:warm])
    with open(out_run, "w") as f:
        f.writelines(population[i] + "\n" for i in draws[warm:])
    seen = set(draws[:warm])
    first = 0
    for i in draws[warm:]:
        if i not in seen:
            first += 1
            seen.add(i)
    print(f"zipf s={s:g} over {len(population)} names: warm-up {warm}, run {run} queries, "
          f"{len(seen)} distinct names; {100.0 * first / max(run, 1):.1f}% of the run's queries "
          f"are first occurrences (misses)")


if __name__ == "__main__":
    main()
