"""convcore.dask on a real LocalCluster (2 worker processes, loopback, no dashboard)."""

import numpy as np
import pytest

import convcore

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
cdask = pytest.importorskip("convcore.dask")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None, silence_logs=40)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def model():
    return convcore.models.lenet(rng=0)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((50, 1, 28, 28), dtype=np.float32)


def test_predict_equals_in_process_with_uneven_and_empty_chunks(client, model, images):
    X = da.from_array(images, chunks=((20, 0, 17, 13), 1, 28, 28))
    expected = convcore.predict(model, images)
    out = cdask.predict(model, X, batch_size=8)
    assert out.shape == (50, 10) and out.chunks[0] == (20, 0, 17, 13)
    # equal up to float32 rounding: the workers' BLAS runs 1 thread and other batch sizes, which
    # changes the GEMMs' summation order
    got = out.compute()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1))
    proba = cdask.predict_proba(model, X).compute()
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    top = cdask.predict_topk(model, X, k=3).compute()
    np.testing.assert_array_equal(top[:, 0], expected.argmax(axis=1))


def test_other_axes_are_rechunked(client, model, images):
    X = da.from_array(images, chunks=(25, 1, 14, 28))
    np.testing.assert_allclose(cdask.predict(model, X).compute(), convcore.predict(model, images), rtol=1e-5,
                               atol=1e-6)


def test_reconstruction_error(client, images):
    ae = convcore.models.conv_autoencoder(latent_dim=4, rng=0)
    X = da.from_array(images, chunks=20)
    np.testing.assert_allclose(cdask.reconstruction_error(ae, X).compute(), ae.reconstruction_error(images),
                               rtol=1e-6)


def test_bad_chunk_shape_surfaces_as_clear_error(client, model):
    X = da.zeros((10, 3, 28, 28), chunks=5, dtype=np.float32)  # 3 channels, the model takes 1
    with pytest.raises(ValueError, match="channel mismatch"):
        cdask.predict(model, X).compute()
    with pytest.raises(TypeError, match="dask.array"):
        cdask.predict(model, np.zeros((2, 1, 28, 28), np.float32))
