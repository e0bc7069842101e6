"""benchsuite: benchmark and black-box optimization suite for reward fine-tuning of diffusion models.

The Python API (``benchsuite.api``, loaded on first use)::

    import benchsuite

    exp = benchsuite.make("digits-jpeg-compress-v1", method="ddpo", seed=0, budget=512, lr=3e-4)
    result = benchsuite.run(exp)                 # the run folder: results/runs/<run id>/
    done = benchsuite.load_run(result.run_dir)   # config, summary, trained policy (weights loaded)
    images = done.sample()

``import benchsuite`` is light: nothing beyond the standard library until an API name is used; mlflow, optuna,
seaborn and diffusers are imported where they are used.
"""

from ._version import __version__

_API = ("Experiment", "FinishedRun", "make", "run", "load_run", "load_config")
__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    """``benchsuite.make`` and the other API names, imported from ``benchsuite.api`` on first access (PEP 562)."""
    if name in _API:
        from . import api  # on first use: `import benchsuite` stays light (no torch)

        return getattr(api, name)
    raise AttributeError(f"module 'benchsuite' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
