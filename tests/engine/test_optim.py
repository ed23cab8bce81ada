"""engine/optim.py: the fused AdamW takes the same steps as torch's default AdamW."""

import torch

from preftune.engine.optim import adamw


def model_and_grads(seed: int) -> tuple[torch.nn.Module, list[list[torch.Tensor]]]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 8))
    grads = [[torch.randn_like(p) for p in model.parameters()] for _ in range(5)]
    return model, grads


def test_fused_adamw_matches_the_default_update():
    fused_model, grads = model_and_grads(0)
    plain_model, _ = model_and_grads(0)
    fused = adamw(list(fused_model.parameters()), 1e-2, 0.1)
    plain = torch.optim.AdamW(plain_model.parameters(), lr=1e-2, weight_decay=0.1)
    assert fused.defaults["fused"] is True
    for step in grads:
        for opt, model in ((fused, fused_model), (plain, plain_model)):
            for p, g in zip(model.parameters(), step, strict=True):
                p.grad = g.clone()
            opt.step()
    moved = False
    for a, b, start in zip(fused_model.parameters(), plain_model.parameters(),
                           model_and_grads(0)[0].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        moved = moved or not torch.equal(a, start)
    assert moved


def test_integer_parameters_fall_back_to_the_loop():
    frozen = torch.nn.Parameter(torch.zeros(3, dtype=torch.int64), requires_grad=False)
    assert adamw([frozen], 1e-3, 0.0).defaults["fused"] is None
