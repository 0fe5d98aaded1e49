import pytest

# The helpers there assert on behalf of the tests: rewrite their asserts as in a test module.
pytest.register_assert_rewrite("tests.loops.support")

# Scripts run in subprocesses of their own (one of them is a pytest suite).
collect_ignore = ["scripts"]
