"""Classification beyond the Task: compact networks and their sizing, transfer-learning strategies, pretraining.

The exam-classification Task itself lives in :mod:`medsight.tasks.classification`; this package holds the
parts it and the ``compare`` / ``pretrain`` commands build on.
"""
