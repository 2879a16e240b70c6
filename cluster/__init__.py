"""Running ragtune's three heavy flows on a Ray cluster: ingest, serving and tuning.

Ray is an optional extra (`pip install -e '.[ray]'`): nothing outside this package imports it, and
this package imports it only inside the functions that need it, so `ragtune` without `--cluster`
never loads Ray.
"""
