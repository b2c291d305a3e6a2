import torch

from layers import L2Norm


def test_l2norm_by_hand():
    layer = L2Norm(2, 20)
    x = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)
    assert torch.allclose(layer(x).flatten(), torch.tensor([12.0, 16.0]))
    assert layer.weight.tolist() == [20.0, 20.0]


def test_l2norm_zero_input_is_finite_and_weight_learns():
    layer = L2Norm(512, 20)
    out = layer(torch.zeros(1, 512, 3, 3))
    assert torch.isfinite(out).all()
    x = torch.randn(2, 512, 4, 4)
    layer(x).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_l2norm_unit_norm_per_position():
    x = torch.randn(2, 16, 5, 5)
    out = L2Norm(16, 1.0)(x)
    assert torch.allclose(out.norm(dim=1), torch.ones(2, 5, 5), atol=1e-5)
