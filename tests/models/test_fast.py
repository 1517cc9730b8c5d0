"""The fast forms (gdn.models.fast) and BatchNorm folding (gdn.models.fold) against the
straightforward modules they replace: equal outputs and equal gradients."""

import pytest
import torch
from torch import nn

from gdn import create_model
from gdn.models.fast import compile_for_inference, gdm_forward, temporal_shift, temporal_shift_channels_last
from gdn.models.layers import GDM, TemporalShift

torch.set_num_threads(1)

RATIOS = {
    "default": (0.25, 0.5),
    "r3d": (1.0, 0.0),
    "r2d": (0.0, 1.0),
    "gst": (0.25, 0.75),  # r_t = 0
    "no_spatial": (0.5, 0.0),
}


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ratio", list(RATIOS))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("frames,size", [(4, (9, 7)), (1, (8, 8)), (3, (5, 6))])
def test_fused_gdm_equals_reference(ratio, stride, frames, size):
    torch.manual_seed(0)
    r_st, r_s = RATIOS[ratio]
    m = GDM(16, 24, stride, r_st, r_s)
    x = torch.randn(2 * frames, 16, *size)

    with torch.no_grad():  # the preallocated-output path
        _close(gdm_forward(m, x, frames, "fused"), m.forward_reference(x, frames))

    grads = []
    for impl in ("reference", "fused"):  # the autograd path
        xi = x.clone().requires_grad_(True)
        m.zero_grad()
        y = gdm_forward(m, xi, frames, impl)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        grads.append((y.detach(), xi.grad, [p.grad.clone() for p in m.parameters()]))
    (y_ref, gx_ref, gp_ref), (y_fast, gx_fast, gp_fast) = grads
    _close(y_fast, y_ref)
    _close(gx_fast, gx_ref)
    assert len(gp_fast) == len(gp_ref) == sum(g is not None for g in (m.st, m.s, m.t))
    for a, b in zip(gp_fast, gp_ref):
        _close(a, b)


def test_fused_gdm_channels_last_keeps_layout_and_values():
    torch.manual_seed(0)
    m = GDM(16, 16, 1)
    x = torch.randn(8, 16, 7, 7).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y = gdm_forward(m, x, 4, "fused")
        _close(y, m.forward_reference(x.contiguous(), 4))
    assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.torch_internals
def test_fused_gdm_never_runs_the_unfold_conv3d_at_one_clip():
    # The reason for the fused form: one clip (batch 1) sends nn.Conv3d to slow_conv3d on CPU.
    from torch.profiler import ProfilerActivity, profile

    m = GDM(16, 16, 1).eval()
    x = torch.randn(8, 16, 7, 7)

    def kernels(impl):
        with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
            gdm_forward(m, x, 8, impl)
        return {e.key for e in prof.key_averages()}

    if not torch.backends.mkldnn.is_available():
        pytest.skip("oneDNN is not available in this PyTorch build")
    assert "aten::slow_conv3d_forward" in kernels("reference")
    fused = kernels("fused")
    assert "aten::slow_conv3d_forward" not in fused
    assert "aten::cat" not in fused


def test_model_uses_fused_gdm_by_default_and_matches_reference():
    torch.manual_seed(0)
    model = create_model("gdn_tiny", num_classes=7).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        fast = model(x)
        gdms = [m for m in model.modules() if isinstance(m, GDM)]
        assert len(gdms) == 8 and all(m.impl == "fused" for m in gdms)
        for m in gdms:
            m.impl = "reference"
        ref = model(x)
    _close(fast, ref)


def test_unknown_gdm_impl_names_the_choices():
    with pytest.raises(ValueError, match="reference, fused"):
        gdm_forward(GDM(8, 8), torch.randn(2, 8, 4, 4), 2, "taps")


@pytest.mark.parametrize("frames,channels,fold_div", [(4, 16, 8), (1, 16, 8), (3, 10, 4), (2, 7, 8)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_shift_equals_reference(frames, channels, fold_div, channels_last):
    torch.manual_seed(0)
    ref_mod = TemporalShift(fold_div)
    x = torch.randn(2 * frames, channels, 3, 5)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    outs = []
    for fn in (lambda v: ref_mod.forward_reference(v, frames), lambda v: temporal_shift(v, frames, fold_div),
               lambda v: temporal_shift_channels_last(v, frames, fold_div)):
        xi = x.clone().requires_grad_(True)
        y = fn(xi)
        (y * torch.arange(y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
        outs.append((y.detach(), xi.grad))
    for y, grad in outs[1:]:
        assert torch.equal(y, outs[0][0])  # a shift is a copy: exactly equal
        assert torch.equal(grad, outs[0][1])
    if channels_last:
        assert outs[1][0].is_contiguous(memory_format=torch.channels_last)
    assert outs[2][0].is_contiguous(memory_format=torch.channels_last)  # whatever the input


def test_compiled_shift_is_the_channels_last_form_and_exact():
    """Under torch.compile `temporal_shift` traces the concatenation form (its output is
    channels-last even for an NCHW input, unlike the eager form) and gives the eager bits."""
    torch.manual_seed(0)
    x = torch.randn(2 * 4, 16, 3, 5)
    compiled = torch.compile(temporal_shift, fullgraph=True)
    y = compiled(x, 4, 8)
    assert torch.equal(y, temporal_shift(x, 4, 8))
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()


def test_shift_moves_the_right_channels():
    x = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 8, 1, 1).contiguous()  # frame index
    y = temporal_shift(x, 3, 8)[:, :, 0, 0]  # (T, C), fold = 1
    assert y[:, 0].tolist() == [1.0, 2.0, 0.0]  # channel 0 takes frame t + 1
    assert y[:, 1].tolist() == [0.0, 0.0, 1.0]  # channel 1 takes frame t - 1
    assert y[:, 2:].tolist() == x[:, 2:, 0, 0].tolist()


@pytest.mark.parametrize("name", ["gdn_tiny", "tsm_tiny", "r3d_tiny", "gst_tiny"])
def test_whole_model_traces_as_one_graph_for_compile(name):
    """torch.compile sees each model as ONE graph: a graph break in the fast modules (as the
    mkldnn availability query once caused) splits every block and hits dynamo's recompile
    limit on a ResNet-50, leaving most of it uncompiled."""
    model = create_model(name, num_classes=5).eval()
    with torch.no_grad():
        report = torch._dynamo.explain(model)(torch.randn(1, 3, 4, 32, 32))
    assert (report.graph_count, report.graph_break_count) == (1, 0), report.break_reasons


@pytest.mark.torch_internals
@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN (a CPU build of PyTorch has it)")
def test_compile_for_inference_freezes_the_weights():
    """compile_for_inference runs its convolutions as frozen, prepacked oneDNN kernels with
    BN folded in (`torch.compile(options={"freezing": True})` silently compiled without
    freezing), gives the eager outputs, and leaves the global inductor flag as it was."""
    model = create_model("gdn_tiny", num_classes=5).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    compiled = compile_for_inference(model)
    with torch.no_grad():
        want = model(x)
        got = compiled(x)
        with torch.profiler.profile() as prof:
            compiled(x)
    ops = {e.key: e.count for e in prof.key_averages()}
    n_conv = sum(isinstance(m, (nn.Conv2d, nn.Conv3d)) for m in model.modules())
    assert ops.get("mkldnn::_convolution_pointwise", 0) + ops.get("mkldnn::_convolution_pointwise_", 0) == n_conv
    assert "aten::native_batch_norm" not in ops
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert torch._inductor.config.freezing is False


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN (a CPU build of PyTorch has it)")
def test_compile_for_inference_takes_each_new_batch_size():
    """An evaluation's last batch is smaller. A third batch size made dynamo compile a
    dynamic-batch graph, and frozen oneDNN 3D convs on a 1x1 feature map (gdn_tiny's last
    stage at 32 px) then failed inductor's stride check; each size now gets its own graph."""
    model = create_model("gdn_tiny", num_classes=5).eval()
    compiled = compile_for_inference(model)
    with torch.no_grad():
        for batch in (2, 1, 3):
            x = torch.randn(batch, 3, 4, 32, 32)
            torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)


def test_frozen_inference_says_when_it_compiles(monkeypatch, caplog):
    """Compilation runs inside the first call of each input shape, for a minute or more on a CPU:
    it is logged then, and only then (torch.compile stubbed out: the logging is under test)."""
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: model)
    model = compile_for_inference(nn.Linear(4, 2).eval())
    with caplog.at_level("INFO", logger="gdn.models.fast"), torch.no_grad():
        for batch in (1, 1, 3, 1, 3):
            model(torch.zeros(batch, 4))
    compiling = [r.getMessage() for r in caplog.records if r.getMessage().startswith("compiling")]
    assert [m.split(" (torch")[0] for m in compiling] == ["compiling the model for inputs of shape (1, 4)",
                                                          "compiling the model for inputs of shape (3, 4)"]
    assert "it pays off over many clips" in compiling[0]
