"""HumanAesExpert (SPEC 3): a vision-language backbone with three scoring heads and a MetaVoter.

Scoring from Python loads the model once::

    from hae_model import load_scorer

    scorer = load_scorer("out/model")  # a folder written by hae_model.train, or a Hub id
    results = scorer(["photo.jpg", pil_image])  # one dict per image, as ``score --json``

Modules, in reading order:

- :mod:`hae_model.config`: :class:`HAEConfig`, saved as ``config.json`` beside every checkpoint.
- :mod:`hae_model.heads`: the level-word score, the regression head, the Expert head and the
  MetaVoter (SPEC 3.1, 3.2).
- :mod:`hae_model.model`: :class:`HumanAesExpert`, backbone + heads, the per-sample switch.
- :mod:`hae_model.data`: exported Parquet shards -> prompts, tiles and padded batches.
- :mod:`hae_model.inference`: scoring many images (stage 2, evaluation, scoring).
- :mod:`hae_model.scorer`: :func:`load_scorer`, the Python scorer (paths and PIL images).
- :mod:`hae_model.model_hub`: Hub ids for ``--model`` / ``--data`` and ``train --push-to-hub``.
- :mod:`hae_model.metavoter`: stage 2, fitting the MetaVoter on cached head scores.
- :mod:`hae_model.train`, :mod:`hae_model.evaluate`, :mod:`hae_model.score`: the CLIs.
- :mod:`hae_model.metrics`: PLCC, SRCC, KRCC, errors and level metrics (SPEC 3.4).
- :mod:`hae_model.tiny`: a tiny random InternVL checkpoint for tests and the demo.
"""

from typing import Any

from hae_model.config import HAEConfig

__all__ = ["HAEConfig", "Scorer", "load_scorer"]


def __getattr__(name: str) -> Any:
    # The scorer pulls in torch and transformers: only when asked for, not on `import hae_model`.
    if name in ("Scorer", "load_scorer"):
        from hae_model import scorer

        return getattr(scorer, name)
    raise AttributeError(f"module 'hae_model' has no attribute {name!r}")
