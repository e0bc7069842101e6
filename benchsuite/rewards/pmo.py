"""The RDKit-only PMO oracles as rewards on SELFIES token sequences (the molecule backbone's samples).

Pipeline as ``selfies-qed``: ``B x V x L`` token probabilities -> argmax -> SELFIES -> SMILES -> the oracle's value
in [0, 1]; an empty or invalid molecule scores ``invalid_value`` (0.0). The oracles themselves are pure functions of a
SMILES in ``benchsuite.domains.pmo`` (usable without torch): ``score_smiles(name, smiles)`` with TDC's names.

Registry names are ``pmo-`` and TDC's name with dashes (``pmo-celecoxib-rediscovery``, ``pmo-qed``, ...): the 20 of
PMO (Gao et al. 2022) with TDC's current semantics (since August 2022, = GuacaMol's definitions; checked against
PyTDC 1.1.15), and four ``-prev`` rewards with TDC's pre-August-2022 isomer scoring (``pmo-isomers-c7h8n2o2-prev``,
``pmo-isomers-c9h10n2o2pf2cl-prev``, ``pmo-zaleplon-mpo-prev``, ``pmo-sitagliptin-mpo-prev``). Each class's docstring
gives its definition; ``version`` is bumped if ours ever changes. They need RDKit (the ``molecules`` extra).
"""

from __future__ import annotations

from typing import ClassVar

from benchsuite.domains.pmo import ORACLES, PREV_SEMANTICS, SEMANTICS

from .molecules import _SelfiesReward


class PmoReward(_SelfiesReward):
    """A PMO oracle (``oracle``, a TDC name in ``benchsuite.domains.pmo.ORACLES``) of the decoded molecule."""

    oracle: ClassVar[str]
    semantics: ClassVar[str] = SEMANTICS
    version: ClassVar[str] = "0"
    value_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.oracle.endswith("_prev"):
            cls.semantics = PREV_SEMANTICS
        if cls.__dict__.get("__doc__") is None:
            spec = ORACLES[cls.oracle]
            cls.__doc__ = (f"PMO oracle {spec.name}: {spec.definition}. In [0, 1]; ``invalid_value`` (0.0) for an "
                           f"empty or invalid molecule. Semantics: {cls.semantics}.")

    def _molecule_score(self, smiles: str) -> float | None:
        return ORACLES[self.oracle].score(smiles)


class PmoCelecoxibRediscovery(PmoReward):
    name: ClassVar[str] = "pmo-celecoxib-rediscovery"
    oracle: ClassVar[str] = "celecoxib_rediscovery"


class PmoTroglitazoneRediscovery(PmoReward):
    name: ClassVar[str] = "pmo-troglitazone-rediscovery"
    oracle: ClassVar[str] = "troglitazone_rediscovery"


class PmoThiothixeneRediscovery(PmoReward):
    name: ClassVar[str] = "pmo-thiothixene-rediscovery"
    oracle: ClassVar[str] = "thiothixene_rediscovery"


class PmoAlbuterolSimilarity(PmoReward):
    name: ClassVar[str] = "pmo-albuterol-similarity"
    oracle: ClassVar[str] = "albuterol_similarity"


class PmoMestranolSimilarity(PmoReward):
    name: ClassVar[str] = "pmo-mestranol-similarity"
    oracle: ClassVar[str] = "mestranol_similarity"


class PmoIsomersC7h8n2o2(PmoReward):
    name: ClassVar[str] = "pmo-isomers-c7h8n2o2"
    oracle: ClassVar[str] = "isomers_c7h8n2o2"


class PmoIsomersC9h10n2o2pf2cl(PmoReward):
    name: ClassVar[str] = "pmo-isomers-c9h10n2o2pf2cl"
    oracle: ClassVar[str] = "isomers_c9h10n2o2pf2cl"


class PmoMedian1(PmoReward):
    name: ClassVar[str] = "pmo-median1"
    oracle: ClassVar[str] = "median1"


class PmoMedian2(PmoReward):
    name: ClassVar[str] = "pmo-median2"
    oracle: ClassVar[str] = "median2"


class PmoOsimertinibMpo(PmoReward):
    name: ClassVar[str] = "pmo-osimertinib-mpo"
    oracle: ClassVar[str] = "osimertinib_mpo"


class PmoFexofenadineMpo(PmoReward):
    name: ClassVar[str] = "pmo-fexofenadine-mpo"
    oracle: ClassVar[str] = "fexofenadine_mpo"


class PmoRanolazineMpo(PmoReward):
    name: ClassVar[str] = "pmo-ranolazine-mpo"
    oracle: ClassVar[str] = "ranolazine_mpo"


class PmoPerindoprilMpo(PmoReward):
    name: ClassVar[str] = "pmo-perindopril-mpo"
    oracle: ClassVar[str] = "perindopril_mpo"


class PmoAmlodipineMpo(PmoReward):
    name: ClassVar[str] = "pmo-amlodipine-mpo"
    oracle: ClassVar[str] = "amlodipine_mpo"


class PmoSitagliptinMpo(PmoReward):
    name: ClassVar[str] = "pmo-sitagliptin-mpo"
    oracle: ClassVar[str] = "sitagliptin_mpo"


class PmoZaleplonMpo(PmoReward):
    name: ClassVar[str] = "pmo-zaleplon-mpo"
    oracle: ClassVar[str] = "zaleplon_mpo"


class PmoDecoHop(PmoReward):
    name: ClassVar[str] = "pmo-deco-hop"
    oracle: ClassVar[str] = "deco_hop"


class PmoScaffoldHop(PmoReward):
    name: ClassVar[str] = "pmo-scaffold-hop"
    oracle: ClassVar[str] = "scaffold_hop"


class PmoValsartanSmarts(PmoReward):
    name: ClassVar[str] = "pmo-valsartan-smarts"
    oracle: ClassVar[str] = "valsartan_smarts"


class PmoQed(PmoReward):
    name: ClassVar[str] = "pmo-qed"
    oracle: ClassVar[str] = "qed"


class PmoIsomersC7h8n2o2Prev(PmoReward):
    name: ClassVar[str] = "pmo-isomers-c7h8n2o2-prev"
    oracle: ClassVar[str] = "isomers_c7h8n2o2_prev"


class PmoIsomersC9h10n2o2pf2clPrev(PmoReward):
    name: ClassVar[str] = "pmo-isomers-c9h10n2o2pf2cl-prev"
    oracle: ClassVar[str] = "isomers_c9h10n2o2pf2cl_prev"


class PmoSitagliptinMpoPrev(PmoReward):
    name: ClassVar[str] = "pmo-sitagliptin-mpo-prev"
    oracle: ClassVar[str] = "sitagliptin_mpo_prev"


class PmoZaleplonMpoPrev(PmoReward):
    name: ClassVar[str] = "pmo-zaleplon-mpo-prev"
    oracle: ClassVar[str] = "zaleplon_mpo_prev"

