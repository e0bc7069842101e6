"""Write the PMO task cards on the ChEMBL prior: one versioned card per RDKit-only PMO oracle.

    python scripts/make_pmo_cards.py            # (re)write tasks/selfies-chembl-pmo-<oracle>-v0.yaml
    python scripts/make_pmo_cards.py --check    # exit 1 if a committed card differs from what this writes

The committed cards are plain YAML a reader can open; this script is only how the 20 of them stay identical but for
the oracle (tests/test_bbo.py checks that they still equal its output). A change to a published card is a new
version: bump ``VERSION`` (the ids change with it), never edit a ``-v0`` card in place.

Every card: PMO's oracle (``benchsuite.rewards.pmo``, TDC's current semantics) on the ChEMBL-pretrained SELFIES
backbone (``selfies-chembl``, length 64, as ``selfies-chembl-qed-v1``), PMO's accounting (``benchsuite.accounting``:
an oracle cache keyed by canonical SMILES, the budget counting distinct valid molecules, the top-k curve read every
100 charged calls), PMO's budget of 10,000 as the default, the drift budget and SA judge tolerance of the other
chembl cards (32 nats of path KL, SA may fall by 0.05), and both evaluation sets.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from benchsuite.domains.pmo import ORACLES, PMO_ORACLES

VERSION = 0
ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "tasks"

TEMPLATE = """\
{header}
# Molecules are SELFIES strings (25 symbols, length 64) sampled from the drug-like prior: the sequence diffusion
# backbone pretrained on ChEMBL molecules (2,911; data card benchsuite/policies/weights/selfies_chembl_l64.md), not
# on ZINC 250k as PMO's optimizers start from. PMO's accounting (benchsuite.accounting): an oracle cache keyed by
# canonical SMILES, so a repeated molecule costs nothing; invalid molecules are free; the budget counts distinct
# valid molecules; pmo/* metrics (AUC top-1/10/100 read every 100 charged calls, top-k, diversity of the top 100)
# at every evaluation point. Written by scripts/make_pmo_cards.py (one card per RDKit-only PMO oracle).
id: {card_id}
description: "PMO {name} (TDC semantics) of SELFIES molecules on the ChEMBL-pretrained backbone, PMO accounting; SA judge"
backbone: selfies-chembl
sampler: {{num_steps: 20, eta: 1.0}}
oracle: {{name: {reward}, version: "0", kwargs: {{length: 64}}}}
judges:
  {name}: {{name: {reward}, version: "0", kwargs: {{length: 64}}}}
  sa: {{name: selfies-sa, version: "0", kwargs: {{length: 64}}}}
primary_judge: {name}
conditions:
  train: null
  eval: null
# two disjoint evaluation sets, noise drawn from (seed, set, the run's seed): paired over seeds
eval: {{samples_per_condition: 128, seed: 20261206, selection: {{samples_per_condition: 64}}}}
# PMO's oracle budget
default_budget: 10000
# freq: charged calls between two points of the top-k curve (PMO: 100); the run ends after free_limit free answers
# (0: 10 x the budget)
accounting: {{mode: pmo, freq: 100, free_limit: 0}}
# the fine-tuners learn from the queries through SEIKO's online rounds (a surrogate refit each round), as on
# selfies-chembl-qed-v1; the GAs and screening do not follow rounds
online: {{rounds: 4, inner_sample_ratio: 1.0, ensemble_size: 4, bonus: 1.0}}
# as selfies-chembl-qed-v1: path KL in nats; the SA judge may fall by at most 0.05 from the run's start
drift_budget: 32
judge_tolerance: {{sa: 0.05}}
# normalized score 1: the oracle's maximum
reference_score: 1.0
"""


def card_id(oracle: str, version: int = VERSION) -> str:
    """``selfies-chembl-pmo-celecoxib-rediscovery-v0`` for ``celecoxib_rediscovery``."""
    return f"selfies-chembl-pmo-{oracle.replace('_', '-')}-v{version}"


def cards() -> dict[str, str]:
    """``{card id: YAML text}`` of every card this script writes."""
    return {card_id(name): TEMPLATE.format(header=_header(name), name=name, card_id=card_id(name),
                                           reward="pmo-" + name.replace("_", "-"))
            for name in PMO_ORACLES}


def _header(name: str) -> str:
    """The card's first comment lines: the oracle and its definition, wrapped."""
    text = (f"PMO's {name} oracle (Gao et al. 2022, arXiv 2206.12411; TDC's current semantics, "
            f"benchsuite.domains.pmo): {ORACLES[name].definition}. In [0, 1]; an invalid or empty molecule scores 0.")
    return "\n".join("# " + line for line in textwrap.wrap(text, 114))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed cards, write nothing")
    args = parser.parse_args(argv)
    stale = []
    for cid, text in cards().items():
        path = TASKS / f"{cid}.yaml"
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(cid)
        else:
            path.write_text(text)
    if stale:
        print(f"{len(stale)} cards differ from scripts/make_pmo_cards.py: {', '.join(stale)}", file=sys.stderr)
        return 1
    print(f"{len(cards())} cards {'match' if args.check else 'written'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
