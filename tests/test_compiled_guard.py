import os

import pytest

import convcore


def test_compiled_extension_loaded_when_required():
    if os.environ.get("CONVCORE_REQUIRE_COMPILED") != "1":
        pytest.skip("set CONVCORE_REQUIRE_COMPILED=1 to require the compiled extension (CI does)")
    info = convcore.info()
    assert info["compiled"], f"compiled extension did not load: {info['compiled_error']}"
    assert convcore.get_backend() == "cython"
