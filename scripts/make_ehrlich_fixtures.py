"""Write reference Ehrlich values computed by pytorch-holo to ``tests/sequences/data/ehrlich_reference.json``.

Usage (needs pytorch-holo, which pins numpy<2 for no reason we hit; install it without dependencies):
    pip install --no-deps pytorch-holo
    python scripts/make_ehrlich_fixtures.py

For each instance below the file stores holo's motifs, spacings and allowed-transition mask, its DMP samples
(``initial_solution(n)``), and holo's values (``null`` for its ``-inf``, infeasible) on fixed sequences: DMP
samples, uniformly random sequences (almost all infeasible), holo's optimal solution, and mutants of it with
1 to 3 positions changed. ``tests/sequences/test_ehrlich.py`` checks ``benchsuite.rewards.ehrlich`` against it.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import types
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parents[1] / "tests" / "sequences" / "data" / "ehrlich_reference.json"

INSTANCES = [
    # num_states, dim, num_motifs, motif_length, quantization, epistasis_factor, seed
    (32, 32, 4, 4, 4, 0.0, 0),  # the task levels (holo-bench fig. 4a uses 32 states, 4 motifs of length 4)
    (32, 64, 4, 4, 4, 0.0, 0),
    (32, 128, 4, 4, 4, 0.0, 0),
    (4, 8, 2, 2, None, 0.0, 0),
    (8, 24, 2, 4, 2, 0.0, 3),
    (20, 40, 3, 3, None, 0.5, 7),
]


def import_holo_ehrlich():
    """holo's ``Ehrlich`` class. holo's package init imports its lookup tables, which need ``pooch`` (a download
    helper); the Ehrlich code does not, so a stand-in module is registered when pooch is absent."""
    try:
        import pooch  # noqa: F401
    except ModuleNotFoundError:
        sys.modules.setdefault("pooch", types.ModuleType("pooch"))
    from holo.test_functions.closed_form import Ehrlich

    return Ehrlich


def instance_record(holo_cls, v: int, L: int, c: int, k: int, q: int | None, e: float, seed: int) -> dict:
    f = holo_cls(num_states=v, dim=L, num_motifs=c, motif_length=k, quantization=q, epistasis_factor=e,
                 random_seed=seed)
    gen = torch.Generator().manual_seed(1000 + seed)
    dmp = f.initial_solution(8)
    uniform = torch.randint(v, (8, L), generator=gen)
    optimal = f.optimal_solution()
    mutants = optimal.repeat(8, 1)
    for row in mutants:
        n = int(torch.randint(1, 4, (1,), generator=gen))
        pos = torch.randperm(L, generator=gen)[:n]
        row[pos] = torch.randint(v, (n,), generator=gen)
    sequences = torch.cat([dmp, uniform, optimal[None], mutants])
    values = f(sequences)
    return {
        "config": {"num_states": v, "dim": L, "num_motifs": c, "motif_length": k, "quantization": q,
                   "epistasis_factor": e, "seed": seed},
        "motifs": [m.tolist() for m in f.motifs],
        "spacings": [s.tolist() for s in f.spacings],
        "allowed": ["".join("1" if a else "0" for a in row) for row in (f.transition_matrix > 0).tolist()],
        "dmp_samples": dmp.tolist(),
        "sequences": sequences.tolist(),
        "values": [None if math.isinf(x) else x for x in values.tolist()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import holo

    holo_cls = import_holo_ehrlich()
    from importlib.metadata import version

    records = [instance_record(holo_cls, *inst) for inst in INSTANCES]
    payload = {"source": f"pytorch-holo {version('pytorch-holo')} ({holo.__name__}.test_functions.closed_form.Ehrlich)",
               "torch_version": torch.__version__, "instances": records}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=1)
    # one line per list of numbers (sequences, values) instead of one line per number
    text = re.sub(r"\[\s+([-0-9.,\sntul e]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    args.out.write_text(text + "\n")
    print(f"wrote {args.out}: {len(records)} instances, {sum(len(r['values']) for r in records)} values")


if __name__ == "__main__":
    main()
