"""The service's faces: the REST API (app factory, routes per feature, middleware, schemas,
rate limit, handler threads), the worker processes, the CLI (``iprof``) and the inspector.

``container.build_services`` wires the parts below into one ``Services``. May import every
runtime package; nothing imports it but the scripts.
"""
