"""Packaging metadata: LICENSE, CITATION.cff (Citation File Format 1.2.0) and pyproject agree with each other and
with the package; the Stable Diffusion extra is named sd, with weights kept as its former name."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

import benchsuite

ROOT = Path(__file__).resolve().parents[1]
# The top-level keys CFF 1.2.0 defines (its schema allows no others) and the ones it requires.
CFF_KEYS = {"abstract", "authors", "cff-version", "commit", "contact", "date-released", "doi", "identifiers",
            "keywords", "license", "license-url", "message", "preferred-citation", "references", "repository",
            "repository-artifact", "repository-code", "title", "type", "url", "version"}
CFF_REQUIRED = {"authors", "cff-version", "message", "title"}


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_is_the_apache_2_text_that_pyproject_declares():
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n") and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert pyproject()["project"]["license"] == "Apache-2.0"


def test_citation_file_is_cff_1_2_0_with_the_package_version():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert CFF_REQUIRED <= set(cff) <= CFF_KEYS, set(cff) ^ CFF_KEYS
    assert all(isinstance(cff[k], str) and cff[k].strip() for k in ("message", "title", "version", "abstract"))
    assert cff["authors"] == [{"name": "benchsuite developers"}]  # an entity author: CFF's "name" key
    assert cff["type"] in ("software", "dataset")
    assert cff["version"] == benchsuite.__version__ == pyproject()["project"]["version"]
    assert cff["license"] == pyproject()["project"]["license"]
    assert isinstance(cff["keywords"], list) and all(isinstance(k, str) for k in cff["keywords"])


def test_stable_diffusion_extra_is_sd_and_weights_stays_its_alias():
    extras = pyproject()["project"]["optional-dependencies"]
    names = {req.split(">")[0].split("[")[0] for req in extras["sd"]}
    assert {"peft", "transformers", "accelerate"} <= names and "benchsuite[images]" in extras["sd"]
    assert extras["weights"] == ["benchsuite[sd]"]
    readme = (ROOT / "README.md").read_text()
    assert '".[sd,test]"' in readme and "[weights" not in readme


def test_every_extra_that_ci_and_readme_install_is_defined():
    """pip only warns about an unknown extra ("does not provide the extra") and installs without it, so a missing
    extra surfaces later as a missing package; .ci/run's and README's install commands name only defined ones."""
    import re

    defined = set(pyproject()["project"]["optional-dependencies"])
    for path in (ROOT / ".ci" / "run", ROOT / "README.md"):
        named = {e.strip() for group in re.findall(r'-e \\?"?\.\[([a-z0-9_,-]+)\]', path.read_text())
                 for e in group.split(",")}
        assert named, f"{path.name}: no editable install with extras found"
        assert named <= defined, f"{path.name} installs extras that pyproject.toml does not define: {named - defined}"
