from dataclasses import replace

import pyarrow as pa
import pytest
import torch

from preftune.engine.forward import FastPaths, ResponseLogps, layout, score_batch
from preftune.engine.logprobs import TokenRows
from preftune.engine.reference import cache_key, reference_logps, reference_pass
from preftune.models.load import add_lora, load_model

ROWS = TokenRows([[11, 12, 13], [14, 15]], [[21, 22], [23, 24, 25, 26, 27]],
                 [[31, 32, 33, 34], [35]])


@pytest.mark.parametrize("paths", [FastPaths(False, False, False), FastPaths(chunk_tokens=3)],
                         ids=["plain", "fast"])
def test_the_reference_applies_the_batchs_ld_alpha_and_no_wpo(paths):
    policy = add_lora(load_model("tiny", "fp32"), 8, 16, 0.0, "all-linear")
    with torch.no_grad():  # adapters off zero: only disabling them gives the base
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    variant = replace(paths, ld_alpha=0.5, wpo=True)
    batch = layout(ROWS, [0, 1], 0, variant)
    ref = reference_logps(policy, None, batch, variant)
    assert ref.chosen_weight is None and ref.rejected_weight is None
    with torch.no_grad():
        base = score_batch(ResponseLogps(load_model("tiny", "fp32"), variant), batch)
    torch.testing.assert_close(ref.chosen, base.chosen, rtol=1e-6, atol=0)
    torch.testing.assert_close(ref.rejected, base.rejected, rtol=1e-6, atol=0)
    chosen, rejected = reference_pass(policy, None, [batch], variant)
    torch.testing.assert_close(torch.from_numpy(rejected), base.rejected, rtol=1e-6, atol=0)
    # Without LD the tails count whole: pair 0's rejected tail and pair 1's chosen one differ.
    plain_chosen, plain_rejected = reference_pass(policy, None, [layout(ROWS, [0, 1], 0, paths)],
                                                  paths)
    assert plain_chosen[0] == chosen[0] and plain_rejected[1] == rejected[1]
    assert plain_rejected[0] != rejected[0] and plain_chosen[1] != chosen[1]


def test_the_cache_key_changes_with_ld_alpha_only_when_it_changes_the_sums():
    table = pa.table({"prompt_ids": [[1, 2]], "chosen_ids": [[3]], "rejected_ids": [[4, 5]]})
    plain = cache_key("tiny", "fp32", table)
    assert cache_key("tiny", "fp32", table, ld_alpha=None) == plain
    assert cache_key("tiny", "fp32", table, ld_alpha=1.0) == plain  # 1.0 is the plain sum
    half = cache_key("tiny", "fp32", table, ld_alpha=0.5)
    assert half != plain
    assert cache_key("tiny", "fp32", table, ld_alpha=0.25) not in (plain, half)
