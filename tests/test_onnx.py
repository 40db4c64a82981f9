"""ONNX import and export (issue 15): torch-exported models load and match torch; convcore
models export and run in onnxruntime; round trips; fine-tuning an import; hostile files."""

import io
import warnings

import numpy as np
import pytest

import convcore
from convcore import functional as F
from convcore import nn, optim

onnx = pytest.importorskip("onnx")
cx = pytest.importorskip("convcore.onnx")


def _torch():
    return pytest.importorskip("torch")


def torch_to_onnx(model, x, flavour="legacy"):
    """``model`` exported by torch.onnx.export with a dynamic batch: the TorchScript exporter
    ("legacy"; "preserve" keeps BatchNormalization nodes) or the torch.export one ("dynamo")."""
    torch = _torch()
    warnings.simplefilter("ignore")
    if flavour == "dynamo":
        pytest.importorskip("onnxscript")
        program = torch.onnx.export(model, (x,), dynamo=True, dynamic_shapes=({0: torch.export.Dim("N")},),
                                    opset_version=18, verbose=False)
        return program.model_proto.SerializeToString()
    f = io.BytesIO()
    kwargs = dict(training=torch.onnx.TrainingMode.PRESERVE) if flavour == "preserve" else {}
    torch.onnx.export(model, (x,), f, dynamo=False, opset_version=17, input_names=["x"],
                      dynamic_axes={"x": {0: "N"}}, **kwargs)
    return f.getvalue()


def torch_lenet():
    tnn = _torch().nn
    return tnn.Sequential(tnn.Conv2d(1, 32, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
                          tnn.Conv2d(32, 64, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
                          tnn.Linear(3136, 128), tnn.ReLU(), tnn.Dropout(0.5), tnn.Linear(128, 10))


def torch_unet():
    torch = _torch()
    tnn = torch.nn

    class UNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.enc = tnn.Sequential(tnn.Conv2d(1, 8, 3, padding=1), tnn.BatchNorm2d(8), tnn.ReLU())
            self.mid = tnn.Sequential(tnn.Conv2d(8, 16, 3, padding=1), tnn.BatchNorm2d(16), tnn.ReLU())
            self.up = tnn.ConvTranspose2d(16, 8, 2, stride=2)
            self.dec = tnn.Sequential(tnn.Conv2d(24, 8, 3, padding=1), tnn.ReLU())
            self.head = tnn.Conv2d(8, 1, 1)

        def forward(self, x):
            skip = self.enc(x)
            z = self.mid(torch.nn.functional.max_pool2d(skip, 2))
            up = torch.cat([self.up(z), torch.nn.functional.interpolate(z, scale_factor=2, mode="nearest")], 1)
            return torch.sigmoid(self.head(self.dec(torch.cat([up[:, :16], skip], 1))))

    return UNet()


def _randomize_bn(model):
    torch = _torch()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model


def assert_rel(ours, theirs, tol=1e-5):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else theirs
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= tol * max(1.0, np.abs(theirs).max()), np.abs(ours - theirs).max()


@pytest.mark.parametrize("flavour", ["legacy", "preserve", "dynamo"])
@pytest.mark.parametrize("which", ["lenet", "resnet18", "unet"])
def test_torch_exported_models_load_and_match_torch(which, flavour):
    torch = _torch()
    torch.manual_seed(0)
    if which == "lenet":
        tm, shape = torch_lenet(), (2, 1, 28, 28)
    elif which == "resnet18":
        from test_graph import torch_resnet

        tm, shape = _randomize_bn(torch_resnet([2, 2, 2, 2], 10, 3).float()), (1, 3, 64, 64)
    else:
        tm, shape = _randomize_bn(torch_unet()), (2, 1, 16, 16)
    tm.eval()
    x = torch.randn(*shape)
    model = cx.load(torch_to_onnx(tm, x, flavour))
    x3 = torch.randn(3, *shape[1:])     # another batch size: the batch is dynamic
    with torch.no_grad():
        assert_rel(convcore.predict(model, x3.numpy()), tm(x3))


def test_imported_lenet_fine_tunes_like_torch():
    torch = _torch()
    torch.manual_seed(1)
    tm = torch_lenet().eval()         # eval: torch's exporter leaves dropout out
    model = cx.load(torch_to_onnx(tm, torch.randn(2, 1, 28, 28)))
    assert {k.split(".")[-1] for k in model.state_dict() if k.startswith("layers.")} >= {"weight", "bias"}
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 8)
    loss = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    opt.zero_grad()
    loss(model(x), y)
    model.backward(loss.backward())
    opt.step()
    topt = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9)
    topt.zero_grad()
    torch.nn.functional.cross_entropy(tm(torch.tensor(x)), torch.tensor(y)).backward()
    topt.step()
    ours = [p.data for p in model.parameters()]
    theirs = [p.detach().numpy() for p in tm.parameters()]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert_rel(a, b.reshape(a.shape) if a.size == b.size else b, 1e-5)


def test_freeze_the_imported_backbone_and_train_a_head():
    torch = _torch()
    backbone = cx.load(torch_to_onnx(torch_lenet().eval(), torch.randn(2, 1, 28, 28)))
    backbone.freeze()
    model = nn.Sequential(backbone, nn.ReLU(), nn.Linear(10, 3, rng=0))
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 1, 28, 28), dtype=np.float32), rng.integers(0, 3, 16)
    frozen = {k: v.copy() for k, v in backbone.state_dict().items()}
    convcore.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), x, y, epochs=2, batch_size=8,
                 progress=False)
    for k, v in backbone.state_dict().items():
        np.testing.assert_array_equal(v, frozen[k])
    assert model[2].weight.grad is not None


def _convcore_models():
    rng = np.random.default_rng(0)
    x28 = rng.random((2, 1, 28, 28), dtype=np.float32)
    pool = nn.MaxPool2d(2, return_indices=True)

    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.bn, self.b = nn.Linear(784, 32, rng=0), nn.BatchNorm1d(32), nn.Linear(32, 5, rng=1)

        def forward(self, x):
            z = self.bn(self.a(F.flatten(x))) * 0.5 + 1.0
            z = z - z.mean(axis=1, keepdims=True)
            return F.log_softmax(self.b(F.leaky_relu(z[:, :32], 0.1)))

    return {
        "lenet": (convcore.models.lenet(rng=0), x28),
        "resnet": (convcore.models.ResNet("basic", [1, 1], 10, 1, width=8, stem="small", rng=0), x28),
        "resnet18": (convcore.models.resnet18(10, 1, rng=0), rng.random((1, 1, 64, 64), dtype=np.float32)),
        "unet": (convcore.models.unet_autoencoder(base_channels=4, rng=0), x28),
        "autoencoder": (convcore.models.conv_autoencoder(latent_dim=8, rng=0), x28),
        "pool-unpool": (nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, rng=0), pool, nn.ReLU(), nn.MaxUnpool2d(pool),
                                      nn.Conv2d(3, 1, 3, padding=1, rng=1)), x28),
        "custom": (Custom(), x28),
        "pools": (nn.Sequential(nn.AvgPool2d(3, 2, 1, count_include_pad=False), nn.Sigmoid(k=2.0, x0=0.5),
                                nn.AdaptiveAvgPool2d((2, 2)), nn.Upsample(2), nn.Tanh(), nn.GlobalAvgPool2d(),
                                nn.Softmax(1)), rng.random((2, 3, 8, 8), dtype=np.float32)),
    }


@pytest.mark.parametrize("name", list(_convcore_models()))
def test_convcore_models_export_run_in_onnxruntime_and_round_trip(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model, x = _convcore_models()[name]
    model.eval()
    path = tmp_path / "m.onnx"
    cx.export(model, path, x)
    x2 = np.concatenate([x, x[:1] * 0.5])          # a different batch size
    ours = convcore.predict(model, x2)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = session.run(None, {session.get_inputs()[0].name: x2})[0]
    assert_rel(ours, theirs, 1e-5)
    back = cx.load(path)
    np.testing.assert_array_equal(convcore.predict(back, x2), ours)   # export -> import is exact


def test_imported_model_saves_and_loads(tmp_path):
    torch = _torch()
    model = cx.load(torch_to_onnx(_randomize_bn(torch_unet()).eval(), torch.randn(1, 1, 16, 16), "preserve"))
    convcore.save(model, tmp_path / "m.npz")
    back = convcore.load(tmp_path / "m.npz")
    x = np.random.default_rng(0).random((2, 1, 16, 16), dtype=np.float32)
    np.testing.assert_array_equal(convcore.predict(back, x), convcore.predict(model, x))


def _graph(nodes, inits=(), inputs=("x",), outputs=("y",), opset=17):
    h = onnx.helper
    g = h.make_graph(list(nodes), "g", [h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, ["N", 4]) for n in inputs],
                     [h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in outputs], list(inits))
    return h.make_model(g, opset_imports=[h.make_opsetid("", opset)])


def test_unsupported_operators_are_listed_with_counts():
    h = onnx.helper
    m = _graph([h.make_node("Erf", ["x"], ["a"]), h.make_node("Erf", ["a"], ["b"]), h.make_node("Cos", ["b"], ["y"])])
    with pytest.raises(cx.UnsupportedOperatorError, match=r"Cos \(x1\), Erf \(x2\)") as info:
        cx.load(m.SerializeToString())
    assert info.value.operators == {"Erf": 2, "Cos": 1}


def test_hostile_files_are_refused(tmp_path):
    h = onnx.helper
    good = _graph([h.make_node("Relu", ["x"], ["y"])]).SerializeToString()
    for bad in (good[: len(good) // 2], np.random.default_rng(0).bytes(5000), b""):
        with pytest.raises(cx.OnnxError):
            cx.load(bad)
    huge = onnx.TensorProto(name="w", data_type=onnx.TensorProto.FLOAT, dims=[1 << 20, 1 << 20], raw_data=b"\0" * 16)
    with pytest.raises(cx.OnnxError, match="declares"):
        cx.load(_graph([h.make_node("MatMul", ["x", "w"], ["y"])], [huge]).SerializeToString())
    small = onnx.TensorProto(name="w", data_type=onnx.TensorProto.FLOAT, dims=[100, 100], raw_data=b"\0" * 16)
    with pytest.raises(cx.OnnxError, match="declares"):
        cx.load(_graph([h.make_node("MatMul", ["x", "w"], ["y"])], [small]).SerializeToString())
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 64)
    ext = onnx.TensorProto(name="w", data_type=onnx.TensorProto.FLOAT, dims=[4, 4])
    ext.data_location = onnx.TensorProto.EXTERNAL
    for location in ("../secret.bin", str(secret)):
        del ext.external_data[:]
        ext.external_data.add(key="location", value=location)
        folder = tmp_path / "model"
        folder.mkdir(exist_ok=True)
        path = folder / "m.onnx"
        path.write_bytes(_graph([h.make_node("MatMul", ["x", "w"], ["y"])], [ext]).SerializeToString())
        with pytest.raises(cx.OnnxError, match="outside the model's folder"):
            cx.load(path)
    cycle = _graph([h.make_node("Relu", ["x", "b"], ["a"]), h.make_node("Relu", ["a"], ["b"]),
                    h.make_node("Relu", ["b"], ["y"])])
    with pytest.raises(cx.OnnxError, match="cycle"):
        cx.load(cycle.SerializeToString())
    with pytest.raises(cx.OnnxError, match="opset"):
        cx.load(_graph([h.make_node("Relu", ["x"], ["y"])], opset=9).SerializeToString())


def test_layer_names_that_are_module_attributes_are_renamed():
    """An initializer named like a Module attribute ("train.weight") still imports: ModuleDict
    refuses such keys (as torch), so the layer gets another name."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "train.weight"], ["y"], name="forward", transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(w, "train.weight")])
    model = convcore.onnx.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    x = np.ones((4, 3), np.float32)
    np.testing.assert_allclose(model(x), x @ w.T)
    assert callable(model.layers.train) and model.training is False
