"""benchsuite: benchmark and black-box optimization suite for reward fine-tuning of diffusion models.

``import benchsuite`` is light: torch is the only heavy import; mlflow, optuna, seaborn and diffusers are
imported where they are used.
"""

__version__ = "0.1.0"
