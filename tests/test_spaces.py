"""Sample spaces: the contract every registered backbone's space meets, the import graph the abstraction keeps
clean, and the grids the spaces draw."""

from __future__ import annotations

import ast
import copy
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchsuite.grids import GRID_HEADER_PX, MOLECULE_TILE, TEXT_ROW_PX, text_grid, text_grid_panel
from benchsuite.registry import BACKBONES
from benchsuite.spaces import ImageSpace, MoleculeSpace, SampleSpace, SequenceSpace, to_uint8
from benchsuite.tasks import make_task, task_specs
from benchsuite.testing import check_space

torch.set_num_threads(1)

PACKAGE = Path(__file__).resolve().parents[1] / "benchsuite"


# ---- the contract, on every registered backbone -------------------------------------------------------------
def _tiny_sd_policy(tmp_path_factory):
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from benchsuite.policies.sd import sd_policy
    from benchsuite.policies.sd_tiny import TINY_RESOLUTION, save_tiny_sd

    folder = save_tiny_sd(tmp_path_factory.mktemp("spaces") / "tiny-sd", seed=0)
    return None, sd_policy(model=str(folder), resolution=TINY_RESOLUTION, num_steps=2, lora_rank=2,
                           allow_download=False)


@pytest.fixture(scope="module", params=BACKBONES.names())
def built(request, tmp_path_factory):
    """(task or None, policy, samples, conditions): each backbone as a run builds it, from its first task card
    (Stable Diffusion from a tiny random model, as tests/policies/test_sd.py builds it), and 12 of its samples."""
    if request.param == "sd":
        task, policy = _tiny_sd_policy(tmp_path_factory)
        conds = torch.arange(12) % 2
    else:
        ids = sorted(t for t, s in task_specs().items() if s.backbone == request.param)
        assert ids, f"backbone {request.param!r} has no task card"
        task = make_task(ids[0])
        policy = task.make_policy()
        tc = task.info.train_conditions
        conds = None if tc is None else tc[torch.arange(12) % len(tc)]
    traj, _ = policy.rollout(conds, torch.Generator().manual_seed(0), batch=12)
    return task, policy, policy.decode(traj.x0), conds


def test_every_backbone_owns_a_space_its_samples_belong_to(built):
    _, policy, samples, _ = built
    assert isinstance(policy.space, SampleSpace)
    assert type(policy.frozen_copy().space) is type(policy.space)  # the reference's samples are the same kind
    policy.space.check(samples)
    with pytest.raises(ValueError):
        policy.space.check(samples.flatten(1))
    with pytest.raises(ValueError):
        policy.space.check(samples[:, :1, ..., :1].long())


def test_features_are_one_finite_row_per_sample(built):
    _, policy, samples, _ = built
    feats = policy.space.features(samples)
    assert feats.ndim == 2 and len(feats) == len(samples)
    assert torch.isfinite(feats.double()).all()


def test_metrics_are_finite_and_drift_is_zero_against_the_same_samples(built):
    _, policy, samples, conds = built
    space = copy.copy(policy.space)
    if getattr(space, "pretraining_data", None) is not None:  # novelty against 4 of the samples, not the 16384
        space.pretraining_data = lambda: space.features(samples)[:4]  # training sequences (SELFIES: 30 s to make)
    first = space.metrics(samples, conds, None)
    assert {"eval/diversity", "eval/vendi"} <= set(first)
    against_itself = space.metrics(samples, conds, samples)
    assert set(first) < set(against_itself)  # the drift metrics need the reference
    assert all(np.isfinite(v) for v in against_itself.values())
    drift = set(against_itself) - set(first)
    assert all(against_itself[k] == pytest.approx(0.0, abs=1e-6) for k in drift), drift
    assert first["eval/diversity"] > 0  # twelve samples of a stochastic sampler differ


def test_render_returns_an_rgb_picture(built, tmp_path):
    _, policy, samples, conds = built
    rewards = torch.linspace(-1, 1, len(samples))
    grid = policy.space.render(samples, conds, rewards, label="test reward")
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3
    assert grid.shape[0] > GRID_HEADER_PX and grid[GRID_HEADER_PX:].min() < 128  # something drawn under the header
    Image.fromarray(grid).save(tmp_path / "grid.png")


def test_records_describe_every_candidate_with_strings_and_existing_files(built, tmp_path):
    _, policy, samples, _ = built
    ids = [f"q{i:06d}" for i in range(len(samples))]
    records = policy.space.records(samples, ids, tmp_path / "ask-0001")
    assert len(records) == len(samples) and all(r and all(isinstance(v, str) for v in r.values()) for r in records)
    files = [Path(r["file"]) for r in records if "file" in r]
    assert all(f.is_file() and f.parent == tmp_path / "ask-0001" for f in files)


def test_decode_encode_round_trip(built):
    _, policy, samples, _ = built
    space = policy.space
    decoded = space.decode(samples)
    assert len(decoded) == len(samples)
    encoded = space.encode(decoded)
    space.check(encoded)
    if isinstance(space, ImageSpace):  # images come back at 8 bits
        torch.testing.assert_close(encoded, to_uint8(samples).float() / 255)
        assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(space.decode(encoded), decoded))
    else:  # sequences come back as one-hot probabilities of the same tokens
        assert torch.equal(encoded.argmax(1), samples.argmax(1)) and space.decode(encoded) == decoded


def test_reward_model_and_image_view_are_differentiable_regressors(built):
    _, policy, samples, conds = built
    space = policy.space
    nc = None if conds is None else int(conds.max()) + 1
    x = samples.detach().clone().requires_grad_(True)
    out = space.reward_model(nc, 8)(x, conds)
    assert out.shape == (len(samples),) and torch.isfinite(out).all()
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    picture = space.as_image(samples)
    assert picture.ndim == 4 and picture.shape[:2] == (len(samples), space.image_channels)


def test_check_space_passes_every_registered_backbones_space(built):
    _, policy, samples, conds = built
    space = copy.copy(policy.space)
    if getattr(space, "pretraining_data", None) is not None:  # as above: novelty against 4 of the samples
        space.pretraining_data = lambda: space.features(samples)[:4]
    check_space(space, samples, conds)


def test_check_space_names_what_a_broken_space_gets_wrong():
    class OneFeatureTooFew(ImageSpace):
        def features(self, samples):
            return super().features(samples)[1:]

    samples = torch.rand(6, 1, 8, 8)
    check_space(ImageSpace(1), samples)
    with pytest.raises(AssertionError, match="features must be N x F"):
        check_space(OneFeatureTooFew(1), samples)


def test_a_policy_without_a_space_gets_images_of_its_channels_or_a_clear_error():
    from benchsuite.policies.base import DiffusionPolicy
    from benchsuite.testing import TINY_SCHEDULER_CONFIG, TinyDenoiser, tiny_policy

    assert repr(tiny_policy().space) == "ImageSpace(channels=1)"
    with pytest.raises(ValueError, match="pass space="):
        DiffusionPolicy(TinyDenoiser((2, 2, 2)), TINY_SCHEDULER_CONFIG, (2, 2, 2), decoder=lambda x: x)


def test_sequence_strings_split_back_into_tokens_and_refuse_strangers():
    space = SequenceSpace(32, 4)
    assert space.decode(space.encode(["0AV9"])) == ["0AV9"]
    with pytest.raises(ValueError, match="starts with no symbol"):
        space.encode(["0AW9"])  # W is state 32: not in a 32-state space
    with pytest.raises(ValueError, match="has 4 symbols"):
        space.encode(["0A"])
    with pytest.raises(ValueError, match="prefix"):
        SequenceSpace(2, 4, symbols=("[C]", "[C"))
    molecules = MoleculeSpace(6)
    assert molecules.decode(molecules.encode(["[C][=O][nop][nop][nop][nop]"])) == ["[C][=O][nop][nop][nop][nop]"]
    assert molecules.smiles(molecules.encode(["[C][=O][nop][nop][nop][nop]"])) == ["C=O"]


# ---- the import graph ---------------------------------------------------------------------------------------
def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p) for p in PACKAGE.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """Every benchsuite module ``path`` imports, at module level or inside a function."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            module = node.module if node.level == 0 else ".".join(p for p in (base, node.module) if p)
            submodules = {f"{module}.{a.name}" for a in node.names} & MODULES  # ``from . import x``: module x
            out |= submodules
            if len(submodules) < len(node.names):  # names defined in the module (or package) itself
                out.add(module)
    return {m for m in out if m in MODULES and m != name}


GRAPH = {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def _reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for m in GRAPH.get(todo.pop(), ()):
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


def test_the_graph_sees_lazy_and_relative_imports():
    assert "benchsuite.metrics.sequences" in GRAPH["benchsuite.spaces"]  # imported inside a method
    assert "benchsuite.policies.base" in GRAPH["benchsuite.policies.embedded"]  # relative


TRANSITIVE_EXCEPTIONS: dict[str, str] = {}  # module -> why it reaches a reward module; none since prompt lists are
# found through benchsuite.data, not benchsuite.tasks


def test_backbones_and_their_spaces_do_not_import_rewards():
    owners = [m for m in GRAPH if m.startswith(("benchsuite.policies", "benchsuite.domains"))]
    owners += ["benchsuite.spaces", "benchsuite.grids"]
    direct = {m: sorted(i for i in GRAPH[m] if i.startswith("benchsuite.rewards")) for m in owners}
    assert not any(direct.values()), direct
    # nor through anything they import (lazy imports included), but for the exceptions named above
    reached = {m: sorted(i for i in _reachable(m) if i.startswith("benchsuite.rewards"))
               for m in owners if m not in TRANSITIVE_EXCEPTIONS}
    assert not any(reached.values()), reached
    assert set(TRANSITIVE_EXCEPTIONS) <= set(owners)


def test_evaluation_and_metrics_do_not_import_each_other():
    metrics = [m for m in GRAPH if m.startswith("benchsuite.metrics")]
    assert any(m.startswith("benchsuite.metrics") for m in GRAPH["benchsuite.evaluation"])
    assert not [m for m in metrics if "benchsuite.evaluation" in _reachable(m)]


def test_evaluation_online_rounds_and_ask_tell_do_not_dispatch_on_shape_or_kind():
    """The files that once chose behaviour from ``ndim``, a decoded shape or ``sample_kind`` now ask the space."""
    files = ["evaluation.py", "asktell.py", "runner.py", "methods/online.py", "methods/surrogate.py", "methods/bo.py"]
    for f in files:
        source = (PACKAGE / f).read_text()
        for pattern in (".ndim", "sample_kind", "is_floating_point", "len(sample_shape)", "getattr(reward"):
            assert pattern not in source, f"{f} uses {pattern}"


# ---- grids --------------------------------------------------------------------------------------------------
def _dark_rows(grid: np.ndarray) -> np.ndarray:
    return (grid.min(axis=(1, 2)) < 128).nonzero()[0]


def test_text_grid_has_one_row_per_best_sequence():
    lines = [f"SEQ{i:03d}" for i in range(40)]
    rewards = torch.arange(40, dtype=torch.float32)
    grid = text_grid(lines, rewards, rows=32)
    assert grid.shape[0] == GRID_HEADER_PX + 32 * TEXT_ROW_PX + 4
    ink = _dark_rows(grid)
    for i in range(32):  # every text row has ink
        band = (ink >= GRID_HEADER_PX + i * TEXT_ROW_PX) & (ink < GRID_HEADER_PX + (i + 1) * TEXT_ROW_PX)
        assert band.any(), i
    longer = text_grid([s * 20 for s in lines], rewards)  # rows longer than the header line
    assert longer.shape[1] > grid.shape[1]  # the row is the whole string
    panel = text_grid_panel(Image.fromarray(grid), rows=16)
    assert panel.size == (grid.shape[1], 16 * TEXT_ROW_PX + 4)


def test_the_best_rows_come_first_in_reward_order():
    from benchsuite.grids import _best

    assert _best(torch.tensor([0.1, 0.9, 0.5, 0.9]), 4, 3) == [1, 3, 2]
    assert _best(None, 5, 3) == [0, 1, 2]


DRUGS = ["CC(=O)OC1=CC=CC=C1C(=O)O", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C", "CCO", "C1=CC=CC=C1"]


def _molecule_samples(smiles: list[str]):
    from benchsuite.domains.molecules import SELFIES_LENGTH, selfies_to_tokens, smiles_to_selfies

    space = MoleculeSpace(SELFIES_LENGTH)
    tokens = selfies_to_tokens(smiles_to_selfies(smiles))
    return space, torch.nn.functional.one_hot(tokens, space.vocab_size).permute(0, 2, 1).float()


def test_molecule_grid_draws_structures_best_first_and_its_first_row_is_the_report_panel():
    pytest.importorskip("rdkit")
    space, samples = _molecule_samples(DRUGS)
    grid = space.render(samples, None, torch.tensor([0.2, 0.9, 0.1, 0.5]))
    width, height = MOLECULE_TILE
    assert grid.shape == (GRID_HEADER_PX + height, 4 * width, 3)
    # the best (caffeine) is drawn in colour (N in blue, O in red); empty tiles and text are grey
    first = grid[GRID_HEADER_PX:GRID_HEADER_PX + height - 2 * TEXT_ROW_PX, :width].astype(int)
    assert ((first[..., 2] - first[..., 0]) > 100).any() and ((first[..., 0] - first[..., 2]) > 100).any()
    assert space.smiles(samples)[2] == "CCO"
    panel = text_grid_panel(Image.fromarray(grid))
    assert panel.size == (4 * width, height)  # exactly the first row of drawings


def test_without_rdkit_molecules_render_as_smiles_rows_said_once(monkeypatch, caplog):
    import benchsuite.spaces as spaces

    space, samples = _molecule_samples(DRUGS)
    monkeypatch.setitem(sys.modules, "rdkit", None)  # import rdkit now raises ImportError
    monkeypatch.setattr(spaces, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="benchsuite.spaces"):
        grid = space.render(samples, None, torch.rand(4))
        again = space.render(samples, None, torch.rand(4))
    assert grid.shape[0] == GRID_HEADER_PX + 4 * TEXT_ROW_PX + 4 and again.shape == grid.shape  # four text rows
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "RDKit is not installed" in lines[0] and "benchsuite[molecules]" in lines[0]


def test_molecule_rewards_without_rdkit_are_a_one_line_error_that_says_how_to_install(monkeypatch, tmp_path, capsys):
    from benchsuite.cli import main
    from benchsuite.errors import BenchsuiteError
    from benchsuite.rewards.molecules import SelfiesQED

    monkeypatch.setitem(sys.modules, "rdkit", None)
    with pytest.raises(BenchsuiteError, match=r"selfies-qed.*needs RDKit.*pip install 'benchsuite\[molecules\]'"):
        SelfiesQED()
    code = main(["run", "--task", "selfies-qed-v0", "--method", "pretrained", "--budget", "64", "--no-mlflow",
                 "--no-progress", "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "benchsuite[molecules]" in err
    assert not (tmp_path / "out").exists()


# ---- ask files, in the space's words ------------------------------------------------------------------------
@pytest.mark.parametrize(("task", "columns"), [("ehrlich-s32-l32-v1", {"sequence", "tokens"}),
                                               ("selfies-qed-v0", {"selfies", "smiles"})])
def test_ask_files_of_sequence_tasks_carry_text_renderings(tmp_path, task, columns):
    from benchsuite.asktell import AskTellSession
    from benchsuite.config import resolve

    session = AskTellSession.create(tmp_path / "s", resolve(task, "best-of-n", seed=0, budget=64))
    batch = session.ask()
    assert all(set(r) == {"id", "condition", *columns} for r in batch.records)
    space = session.policy.space
    strings = space.decode(batch.samples)
    key = "sequence" if "sequence" in columns else "selfies"
    assert [r[key] for r in batch.records] == strings
    assert batch.path.read_text().splitlines()[0] == ",".join([*batch.records[0], "score"])


def test_the_report_panel_of_a_task_comes_from_its_backbones_sample_space():
    from benchsuite.grids import GRID_PANELS, sample_grid_panel, text_grid_panel
    from benchsuite.report.labels import ReportTask, report_task
    from benchsuite.tasks import backbone_space

    assert backbone_space("digits") is ImageSpace and backbone_space("tiny") is ImageSpace  # nothing declared
    assert backbone_space("ehrlich") is SequenceSpace and backbone_space("selfies") is MoleculeSpace
    assert GRID_PANELS[ImageSpace.grid_panel] == (sample_grid_panel, 4)
    assert GRID_PANELS[MoleculeSpace.grid_panel] == (text_grid_panel, 2)  # a sequence space's rows
    assert report_task("ehrlich-s32-l32-v0").grid_panel == "rows"
    assert report_task("toy-brightness-v0").grid_panel == "tiles"
    # a report.json saved before grid_panel (its "sequences" flag) reads as the same panels
    old = {"id": "t", "headline": "h", "judges": ["h"], "metrics": ["h"], "judge_rewards": [], "sequences": True}
    assert ReportTask.from_json(old).grid_panel == "rows"


def test_one_hot_tokens_inverts_the_sequence_spaces_tokens():
    from benchsuite.spaces import SequenceSpace, one_hot_tokens

    space = SequenceSpace(vocab_size=5, length=4)
    tokens = torch.tensor([[0, 4, 2, 2], [3, 1, 0, 4]])
    samples = one_hot_tokens(tokens, 5)
    space.check(samples)  # B x V x L float
    assert torch.equal(space.tokens(samples), tokens) and samples.sum(1).eq(1).all()
