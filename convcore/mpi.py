"""Synchronous data-parallel training over MPI (``pip install convcore[mpi]``, plus an MPI such as
``pip install mpich``; run with ``mpiexec -n 2 python train.py``).

``DataParallel(model)`` broadcasts the weights from rank 0, and ``step`` runs one synchronous step:
every rank computes gradients on its shard of the global batch, one ``Allreduce`` sums a single
flat buffer holding every trainable (not frozen) gradient, each weighted by its shard's share of the
batch, and every rank applies the same optimizer step, so the replicas stay identical. Frozen
parameters are never communicated and never change.

BatchNorm running statistics are averaged over ranks after every step (so every replica, and a
saved model, sees the statistics of the whole global batch). Dropout draws from a generator seeded
with ``(seed, rank)``, so ranks drop different units, reproducibly.
"""

from __future__ import annotations

import numpy as np

from . import _random
from .nn import Dropout, Module
from .training import History

try:
    from mpi4py import MPI
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError("convcore.mpi needs mpi4py and an MPI library: pip install 'convcore[mpi]' mpich") from exc

__all__ = ["DataParallel"]


class DataParallel:
    """Keep ``model`` identical on every rank of ``comm`` and train it on sharded batches.

    In the spirit of ``torch.nn.parallel.DistributedDataParallel``, but explicit: construction
    broadcasts the parameters and buffers from ``root``, ``step`` runs one synchronous step
    (forward and backward on this rank's shard, one ``Allreduce`` of the gradients weighted by
    each shard's share of the batch, the same optimizer step everywhere, batch norm statistics
    averaged), and ``fit`` loops over epochs. Every rank must make the same calls.

    Parameters
    ----------
    model : Module
        The model, built the same way on every rank (its values are replaced by root's).
    comm : mpi4py.MPI.Comm, optional
        The communicator (default ``MPI.COMM_WORLD``).
    root : int, default 0
        The rank whose parameters and buffers are broadcast.
    seed : int, default 0
        Dropout layers draw from generators seeded with ``(seed, rank, index)``.

    Attributes
    ----------
    rank, size : int
        This process's rank and the number of ranks.

    Examples
    --------
    In a script run as ``mpiexec -n 2 python train.py``:

    >>> import numpy as np
    >>> import convcore
    >>> from convcore import nn, optim
    >>> from convcore.mpi import DataParallel
    >>> model = nn.Linear(4, 2, rng=0)
    >>> dp = DataParallel(model)
    >>> opt = optim.SGD(model.parameters(), lr=0.1)
    >>> x = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int64)
    >>> history = dp.fit(nn.CrossEntropyLoss(), opt, x, y, epochs=2, batch_size=8)
    >>> len(history.loss)
    2

    Without ``mpiexec`` the world has one rank and this runs as ordinary training.
    """

    def __init__(self, model: Module, comm=None, root: int = 0, seed: int = 0):
        self.model = model
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        for p in model.parameters():
            self.comm.Bcast(p.data, root=root)
            p.mark_changed()
        self._sync_buffers(average=False, root=root)
        for i, m in enumerate(mod for mod in model.modules() if isinstance(mod, Dropout)):
            object.__setattr__(m, "_rng", np.random.default_rng([seed, self.rank, i]))

    def _trainable(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def _sync_buffers(self, average: bool, root: int = 0) -> None:
        for m in self.model.modules():
            for name, b in list(m._buffers.items()):
                b = np.array(b, order="C")   # a new array: inference caches key on buffer identity
                if average and np.issubdtype(b.dtype, np.floating):
                    out = np.empty_like(b)
                    self.comm.Allreduce(b, out, op=MPI.SUM)
                    m._buffers[name] = out / self.size
                elif not average:
                    self.comm.Bcast(b, root=root)
                    m._buffers[name] = b

    def allreduce_gradients(self, weight: float = 1.0) -> None:
        """Replace every trainable gradient by the sum over ranks of ``weight * grad`` (one
        Allreduce of one flat buffer; a missing gradient counts as zeros).

        Parameters
        ----------
        weight : float, default 1.0
            This rank's factor (``step`` passes its shard's share of the global batch).
        """
        params = self._trainable()
        if not params:
            return
        dtype = np.result_type(*[p.dtype for p in params])
        flat = np.concatenate([(p.grad if p.grad is not None else np.zeros_like(p.data)).ravel() * weight
                               for p in params]).astype(dtype, copy=False)
        total = np.empty_like(flat)
        self.comm.Allreduce(flat, total, op=MPI.SUM)
        offset = 0
        for p in params:
            p.grad = total[offset : offset + p.size].reshape(p.shape).astype(p.dtype, copy=False)
            offset += p.size

    def step(self, loss, optimizer, x_shard, y_shard, global_batch: int) -> float:
        """One synchronous step on this rank's shard of a global batch of ``global_batch`` samples.

        Parameters
        ----------
        loss : callable
            A loss with a mean reduction (``nn.CrossEntropyLoss()``).
        optimizer : Optimizer
            Over ``model``'s parameters; every rank steps it identically.
        x_shard, y_shard : ndarray
            This rank's part of the batch (may be empty).
        global_batch : int
            The samples of the batch over all ranks.

        Returns
        -------
        float
            The global mean loss.
        """
        optimizer.zero_grad()
        value = loss(self.model(x_shard), y_shard) if len(x_shard) else 0.0
        if len(x_shard):
            self.model.backward(loss.backward(), need_input_grad=False)
        # the loss is a mean over the shard: weight each rank's gradient by its share of the batch
        self.allreduce_gradients(weight=len(x_shard) / global_batch)
        optimizer.step()
        self._sync_buffers(average=True)
        return self.comm.allreduce(value * len(x_shard), op=MPI.SUM) / global_batch

    def fit(self, loss, optimizer, x, y, epochs: int = 1, batch_size: int = 64, seed: int = 0,
            shuffle: bool = True) -> History:
        """Train on ``(x, y)`` (the full data, identical on every rank): each global batch of
        ``batch_size`` samples is split into ``size`` contiguous shards, one per rank.

        Parameters
        ----------
        loss : callable
        optimizer : Optimizer
        x, y : ndarray
            The whole training set, the same on every rank.
        epochs : int, default 1
        batch_size : int, default 64
            The global batch size.
        seed : int, default 0
            The shuffle order (the same on every rank).
        shuffle : bool, default True

        Returns
        -------
        History
            Only ``history.loss`` (the global mean loss per epoch) is filled.
        """
        history = History()
        rng = _random.resolve_rng(seed)  # same seed on every rank: same order everywhere
        self.model.train()
        for _ in range(epochs):
            order = rng.permutation(len(x)) if shuffle else np.arange(len(x))
            total = 0.0
            for i in range(0, len(x), batch_size):
                idx = order[i : i + batch_size]
                bounds = np.linspace(0, len(idx), self.size + 1).astype(int)
                mine = idx[bounds[self.rank] : bounds[self.rank + 1]]
                total += self.step(loss, optimizer, x[mine], y[mine], len(idx)) * len(idx)
            history.loss.append(total / len(x))
        return history
