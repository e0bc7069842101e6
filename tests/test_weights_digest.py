"""The digest manifest of the embedded weights (``benchsuite/policies/weights/SHA256SUMS``): it matches the files,
the loaders refuse a corrupted copy (one line, exit code 2 at the command line), the training scripts' writer keeps
the other lines, and a run records the digest of the weights its backbone loaded (``backbone_digest``)."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from benchsuite.config import backbone_digest, resolve
from benchsuite.errors import WeightsDigestError
from benchsuite.policies import sequence
from benchsuite.tasks import load_spec
from benchsuite.weights import (EMBEDDED_WEIGHTS_DIR, MANIFEST_NAME, check_digest, read_manifest, record_digests,
                                weights_digest)

ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2's example "abc"
L32 = "ehrlich_s32_l32.safetensors"


def test_manifest_lists_every_embedded_file_with_its_sha256():
    manifest = read_manifest(EMBEDDED_WEIGHTS_DIR)
    files = {p.name for p in EMBEDDED_WEIGHTS_DIR.iterdir() if p.name != MANIFEST_NAME}
    assert set(manifest) == files
    for name, digest in manifest.items():
        assert hashlib.sha256((EMBEDDED_WEIGHTS_DIR / name).read_bytes()).hexdigest() == digest, name


def test_every_shipped_sequence_model_has_a_line():
    manifest = read_manifest(EMBEDDED_WEIGHTS_DIR)
    assert {m.weights_path.name for m in sequence.shipped_models().values()} <= set(manifest)


@pytest.fixture
def weights_copy(tmp_path, monkeypatch):
    """The package's weights folder copied to ``tmp_path`` (manifest included), the sequence loaders pointed at it."""
    folder = tmp_path / "weights"
    folder.mkdir()
    for name in (L32, MANIFEST_NAME):
        shutil.copyfile(EMBEDDED_WEIGHTS_DIR / name, folder / name)
    monkeypatch.setattr(sequence, "WEIGHTS_DIR", folder)
    return folder


def _corrupt(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # one bit of the last tensor's last byte: the header (and the configs) stay valid
    path.write_bytes(bytes(data))


def test_a_corrupted_copy_is_refused_and_the_intact_one_loads(weights_copy):
    model = sequence.shipped_model("ehrlich-s32-l32")
    sequence.load_denoiser(model, weights_copy / L32)  # intact: loads
    _corrupt(weights_copy / L32)
    with pytest.raises(WeightsDigestError) as err:
        sequence.load_denoiser(model, weights_copy / L32)
    message = str(err.value)
    assert "\n" not in message and "does not match its digest" in message
    assert "git checkout --" in message and "python scripts/train_sequence_backbone.py --model ehrlich-s32-l32" in message


def test_a_file_without_a_line_is_refused_and_one_outside_a_manifest_folder_is_taken(weights_copy, tmp_path):
    (weights_copy / MANIFEST_NAME).write_text(f"{ABC_SHA256}  other.bin\n")  # no line for the file
    with pytest.raises(WeightsDigestError, match="has no digest in"):
        check_digest(weights_copy / L32, "rebuild")
    loose = tmp_path / "loose.bin"
    loose.write_bytes(b"abc")
    assert check_digest(loose, "rebuild") == ABC_SHA256  # no SHA256SUMS beside it: nothing to check against


def test_a_malformed_manifest_line_is_one_error(weights_copy):
    (weights_copy / MANIFEST_NAME).write_text("not a digest  x.bin\n")
    with pytest.raises(WeightsDigestError, match="line 1: expected '<sha256>  <file name>'"):
        read_manifest(weights_copy)


def test_record_digests_writes_sha256sum_lines_and_keeps_the_others(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"abc")
    (tmp_path / "b.bin").write_bytes(b"")
    (tmp_path / MANIFEST_NAME).write_text(f"{'0' * 64}  b.bin\n")  # a stale line of a file this call did not write
    assert record_digests(tmp_path / "a.bin") == [tmp_path / MANIFEST_NAME]
    assert (tmp_path / MANIFEST_NAME).read_text() == f"{ABC_SHA256}  a.bin\n{'0' * 64}  b.bin\n"
    with pytest.raises(WeightsDigestError, match="does not match"):  # so b.bin is still refused
        check_digest(tmp_path / "b.bin", "rebuild")


def test_weights_digest_is_the_sha256_of_the_manifest_lines(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"abc")
    record_digests(tmp_path / "a.bin")
    line = f"{ABC_SHA256}  a.bin\n"
    assert weights_digest([(tmp_path / "a.bin", "x")]) == hashlib.sha256(line.encode()).hexdigest()
    assert weights_digest([]) == ""


def test_backbone_digest_covers_the_cards_own_backbone_file_only():
    l32 = backbone_digest(load_spec("ehrlich-s32-l32-v1"))
    assert l32 == weights_digest([(EMBEDDED_WEIGHTS_DIR / L32, "")])
    assert backbone_digest(load_spec("toy-ehrlich-v0")) == l32  # the same backbone file, the same digest
    assert backbone_digest(load_spec("ehrlich-s32-l64-v1")) != l32
    digits = backbone_digest(load_spec("digits-jpeg-compress-v1"))  # the UNet and the consistency model
    both = [(EMBEDDED_WEIGHTS_DIR / f"digits_{n}.safetensors", "") for n in ("unet", "consistency")]
    assert digits == weights_digest(both)
    assert backbone_digest(load_spec("toy-brightness-v0")) == ""  # the tiny test backbone: no embedded weights


def test_the_cli_refuses_a_corrupted_backbone_with_exit_2(weights_copy, tmp_path, capsys):
    from benchsuite.cli import main

    _corrupt(weights_copy / L32)
    out = tmp_path / "out"
    code = main(["run", "--task", "toy-ehrlich-v0", "--method", "best-of-n", "--output", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("benchsuite: error: ") and "\n" not in err, err
    assert "does not match its digest" in err and not out.exists()


def test_a_run_records_its_backbone_digest(tmp_path):
    from benchsuite.runner import run

    config = resolve("toy-ehrlich-v0", "best-of-n", seed=0, budget=16, overrides={"batch_size": 16},
                     output_root=str(tmp_path))
    run(config)
    tags = json.loads((config.run_dir / "run.json").read_text())["tags"]
    assert tags["backbone_digest"] == backbone_digest(load_spec("toy-ehrlich-v0"))
    assert len(tags["backbone_digest"]) == 64
