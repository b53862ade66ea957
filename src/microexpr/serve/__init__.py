"""``microexpr serve``: a small web page and JSON API over video analysis (docs/serve.md).

Importing this package imports nothing heavy: FastAPI, uvicorn and the analysis code are
imported by :mod:`.app` and :mod:`.jobs`, which the command loads only when it runs, so
``microexpr --help`` stays fast.
"""
