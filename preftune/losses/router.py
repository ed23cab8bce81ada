"""The router load-balancing loss of mixture-of-experts models (Switch Transformer).

Fedus et al. 2021, Eqs. 4-6: ``num_experts * sum_e f_e * P_e``, where ``f_e`` is the share of
top-k assignments that go to expert e and ``P_e`` the mean router probability of e, both over
every token of every layer. transformers adds it to the language-model loss as
``router_aux_loss_coef * aux_loss`` when ``output_router_logits`` is on, and TRL's DPOTrainer
adds it to the preference loss the same way.

Tokens carry weights: 0 for padding, as transformers' attention mask gives, and 2 for a prompt
read once for both responses, which the plain computation reads twice. With those weights the
packed layout gives the value of the plain one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def load_balancing_loss(router_logits: Sequence[torch.Tensor], weights: torch.Tensor,
                        num_experts: int, top_k: int) -> torch.Tensor:
    """The auxiliary loss over layers' router logits, each (T, E); weights (T,) per token.

    One token, one layer, E = 2, top_k 1, router probabilities (0.75, 0.25): it goes to expert
    0, so f = (1, 0), P = (0.75, 0.25) and the loss is 2 · (1 · 0.75 + 0 · 0.25) = 1.5.
    """
    weights = weights.reshape(-1).float()                                   # (T,)
    assigned = weights.new_zeros(num_experts)                               # (E,)
    probability = weights.new_zeros(num_experts)                            # (E,)
    for logits in router_logits:
        probs = torch.softmax(logits.float(), dim=-1)                       # (T, E)
        experts = probs.topk(top_k, dim=-1).indices                         # (T, k)
        assigned = assigned.index_add(0, experts.reshape(-1), weights.repeat_interleave(top_k))
        probability = probability + (probs * weights[:, None]).sum(0)
    total = weights.sum() * len(router_logits)
    return num_experts * ((assigned / total) * (probability / total)).sum()
