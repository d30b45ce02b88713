"""Great Expectations, in one place: a suite per stage output and the runner that validates it.

The rest of ``vmas`` never imports GX; ``vmas check STAGE``, ``dvc.yaml`` and Dagster's blocking
asset checks all call :func:`vmas.quality.suites.check_stage`.
"""
