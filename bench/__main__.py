"""`python -m bench [NAME ...]`: run the named benchmarks (all by default)."""

from __future__ import annotations

import argparse

from bench import (
    batch_noise,
    bulk,
    embed,
    faults,
    mesh,
    pair_vectors,
    quantize,
    scale,
    simulate,
    trace,
    tracing,
    transport,
    verifier,
    verifier_veto,
    warm,
    wise,
)

BENCHMARKS = {
    "batch_noise": batch_noise.main,
    "bulk": bulk.main,
    "embed": embed.main,
    "faults": faults.main,
    "mesh": mesh.main,
    "pair_vectors": pair_vectors.main,
    "quantize": quantize.main,
    "scale": scale.main,
    "simulate": simulate.main,
    "trace": trace.main,
    "wise": wise.main,
    "tracing": tracing.main,
    "transport": transport.main,
    "verifier": verifier.main,
    "verifier_veto": verifier_veto.main,
    "warm": warm.main,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"any of: {', '.join(BENCHMARKS)}")
    names = parser.parse_args().names or list(BENCHMARKS)
    if unknown := set(names) - set(BENCHMARKS):
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    for name in names:
        BENCHMARKS[name]()


if __name__ == "__main__":
    main()
