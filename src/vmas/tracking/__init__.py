"""MLflow, in one place: the runs commands log to (:mod:`runs`) and the model registry (:mod:`registry`).

The rest of ``vmas`` never imports MLflow: it hands metrics and files to a Lightning logger.
"""
