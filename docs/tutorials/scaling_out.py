"""Scaling out: batch inference over a dask array, data-parallel training over MPI.

``convcore.dask.predict`` maps a model over the batch chunks of a dask array (the model travels
once, as the bytes of a ``convcore.save`` file). ``convcore.mpi.DataParallel`` splits each global
batch over MPI ranks and averages gradients with one Allreduce. This page runs dask with its
threaded scheduler and MPI with two ranks when ``mpiexec`` is available.
"""

import shutil
import subprocess
import sys
import textwrap

import numpy as np

import convcore

try:
    import dask
    import dask.array as da

    import convcore.dask
except ImportError:
    print("dask is not installed: pip install 'convcore[dask]'")
else:
    (x_train, y_train), (x_test, y_test) = convcore.datasets.load_mnist()
    model = convcore.models.lenet(rng=0)
    X = da.from_array(x_test, chunks=(250, 1, 28, 28))
    with dask.config.set(scheduler="threads", num_workers=2):
        logits = convcore.dask.predict(model, X, batch_size=250)
        top = convcore.dask.predict_topk(model, X, k=3).compute()
    print("lazy logits:", logits)
    print("equal to in-process predict:", np.allclose(logits.compute(), convcore.predict(model, x_test)))
    print("top-3 of the first image:", top[0])

script = textwrap.dedent('''
    import numpy as np, convcore
    from convcore import nn, optim
    from convcore.mpi import DataParallel
    (x, y), _ = convcore.datasets.load_mnist()
    model = convcore.models.lenet(rng=0)
    dp = DataParallel(model, seed=0)
    h = dp.fit(nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.05, momentum=0.9), x, y, epochs=1,
               batch_size=64)
    if dp.rank == 0:
        print(f"{dp.size} ranks, one epoch over {len(x)} digits, training loss {h.loss[-1]:.3f}")
''')
if shutil.which("mpiexec") is None:
    print("mpiexec not found: pip install 'convcore[mpi]'")
else:
    out = subprocess.run(["mpiexec", "-n", "2", sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    print("MPI data-parallel:", out.stdout.strip() or out.stderr[-500:])
