"""Classify: language, watched organizations, HR topics and sentiment.

The served path: ``service.ClassifyService`` (a consumer-group member over
``lyssna.posts.raw``, batches under a time budget, output produced before its
offsets are committed) runs ``classifier.Classifier``: ``langid`` and
``mentions`` (linear-time text handling, links found once per text by
``textspans``), then the transformer (``encoder``, with ``cpu_fusion`` where the
CPU has the kernels) and the trained ``heads``. ``batch`` is the same path for
files (``lyssna classify``). ``training/`` is offline and never imported by the
service.
"""
