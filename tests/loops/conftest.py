import pytest

# The helpers there assert on behalf of the tests: rewrite their asserts as in a test module.
pytest.register_assert_rewrite("tests.loops.support")
