"""Write ``api/<module>.rst`` for every public module from its ``__all__``, before reading the
sources, so the API reference lists every public name and cannot drift from the code."""

import importlib
import inspect
from pathlib import Path

MODULES = [
    ("convcore", "Top level: training loop, saving, backends, threads"),
    ("convcore.nn", "Layers, containers, losses"),
    ("convcore.nn.init", "Parameter initialisation"),
    ("convcore.nn.utils", "Gradient clipping, parameter vectors"),
    ("convcore.functional", "Functional operations"),
    ("convcore.ops", "Kernels"),
    ("convcore.optim", "Optimizers"),
    ("convcore.optim.lr_scheduler", "Learning-rate schedulers"),
    ("convcore.callbacks", "Training callbacks"),
    ("convcore.data", "Data loading"),
    ("convcore.transforms", "Transforms"),
    ("convcore.models", "Ready-made models"),
    ("convcore.metrics", "Metrics"),
    ("convcore.adversarial", "Adversarial examples"),
    ("convcore.datasets", "Datasets"),
    ("convcore.onnx", "ONNX import and export"),
    ("convcore.dask", "Dask batch inference"),
    ("convcore.mpi", "MPI data-parallel training"),
    ("convcore.bench", "Benchmark harness"),
]


def _public(module):
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in dir(module) if not n.startswith("_")]
    out = []
    for name in names:
        obj = getattr(module, name, None)
        if inspect.ismodule(obj) or obj is None or isinstance(obj, (int, float, str, dict, tuple)):
            continue
        out.append(name)
    return out


def write_pages(app, config=None):
    folder = Path(app.srcdir) / "api"
    folder.mkdir(exist_ok=True)
    written = []
    for name, title in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:   # an optional extra not installed where the docs are built
            continue
        heading = f"``{name}``: {title}"
        lines = [heading, "=" * len(heading), "", f".. automodule:: {name}", "   :no-members:", "",
                 f".. currentmodule:: {name}", "", ".. autosummary::", "   :toctree: generated", ""]
        lines += [f"   {n}" for n in _public(module)]
        page = folder / (name.replace(".", "_") + ".rst")
        text = "\n".join(lines) + "\n"
        if not page.exists() or page.read_text() != text:
            page.write_text(text)
        written.append(page.stem)
    index = ["API reference", "=============", "", "Every public name of every public module.", "",
             ".. toctree::", "   :maxdepth: 1", ""] + [f"   {stem}" for stem in written]
    text = "\n".join(index) + "\n"
    page = folder / "index.rst"
    if not page.exists() or page.read_text() != text:
        page.write_text(text)


def setup(app):
    # config-inited, not builder-inited: the pages must exist before Sphinx lists the source files,
    # or autosummary (which reads that list when the builder starts) never sees them
    app.connect("config-inited", write_pages)
    return {"parallel_read_safe": True}
