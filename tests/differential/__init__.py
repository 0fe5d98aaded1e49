"""Generated statements for `tests/test_differential.py`.

Every shape takes a `random.Random` and builds one statement of that shape with fresh
literals, so one shape run with several seeds exercises the statement caches as an
application does: the same structure again and again with other values. Built again from
an equal seed it gives a structurally equal, new statement object.
"""
