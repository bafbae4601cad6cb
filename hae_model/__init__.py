"""HumanAesExpert (SPEC 3): a vision-language backbone with three scoring heads and a MetaVoter.

Modules, in reading order:

- :mod:`hae_model.config`: :class:`HAEConfig`, saved as ``config.json`` beside every checkpoint.
- :mod:`hae_model.heads`: the level-word score, the regression head, the Expert head and the
  MetaVoter (SPEC 3.1, 3.2).
- :mod:`hae_model.model`: :class:`HumanAesExpert`, backbone + heads, the per-sample switch.
- :mod:`hae_model.data`: exported Parquet shards -> prompts, tiles and padded batches.
- :mod:`hae_model.inference`: scoring many images (stage 2, evaluation, scoring).
- :mod:`hae_model.metavoter`: stage 2, fitting the MetaVoter on cached head scores.
- :mod:`hae_model.train`, :mod:`hae_model.evaluate`, :mod:`hae_model.score`: the CLIs.
- :mod:`hae_model.metrics`: PLCC, SRCC, KRCC, errors and level metrics (SPEC 3.4).
- :mod:`hae_model.tiny`: a tiny random InternVL checkpoint for tests and the demo.
"""

from hae_model.config import HAEConfig

__all__ = ["HAEConfig"]
