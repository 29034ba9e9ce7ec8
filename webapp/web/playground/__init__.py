"""The playground: sample a model version or a run's output without training (``pages``)."""
