"""Training: models, the cached input pipeline, the trainer and hyperparameter search.

The only layer besides ``package.export`` that imports PyTorch; serving never does.
"""
