"""Every public name is documented in numpydoc form with a runnable example (issue 18). The
examples themselves run as doctests in CI (``pytest --doctest-modules convcore``); this test
keeps a new public name from arriving without them."""

import importlib
import inspect

import pytest

MODULES = ["convcore", "convcore.nn", "convcore.nn.init", "convcore.nn.utils", "convcore.functional", "convcore.ops",
           "convcore.optim", "convcore.optim.lr_scheduler", "convcore.callbacks", "convcore.data",
           "convcore.transforms", "convcore.models", "convcore.metrics", "convcore.adversarial",
           "convcore.datasets", "convcore.onnx", "convcore.dask", "convcore.mpi", "convcore.bench"]
OPTIONAL = {"convcore.onnx": "onnx", "convcore.dask": "dask", "convcore.mpi": "mpi4py"}


def _public(module):
    for name in getattr(module, "__all__", [n for n in dir(module) if not n.startswith("_")]):
        obj = getattr(module, name, None)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            yield name, obj


@pytest.mark.parametrize("modname", MODULES)
def test_every_public_name_has_a_numpydoc_docstring_with_an_example(modname):
    if modname in OPTIONAL:
        pytest.importorskip(OPTIONAL[modname])
    module = importlib.import_module(modname)
    problems = []
    for name, obj in _public(module):
        doc = inspect.getdoc(obj) or ""
        if not doc:
            problems.append(f"{name}: no docstring")
            continue
        if "Examples\n--------" not in doc:
            problems.append(f"{name}: no Examples section")
        takes_args = False
        try:
            target = obj.__init__ if inspect.isclass(obj) else obj
            params = [p for p in inspect.signature(target).parameters.values() if p.name not in ("self", "cls")]
            takes_args = bool(params)
        except (TypeError, ValueError):
            pass
        if inspect.isclass(obj) and (obj.__init__ is object.__init__ or issubclass(obj, BaseException)):
            takes_args = False   # exceptions take their message
        if takes_args and "Parameters\n----------" not in doc:
            problems.append(f"{name}: takes arguments but has no Parameters section")
    assert not problems, f"{modname}: " + "; ".join(problems)
