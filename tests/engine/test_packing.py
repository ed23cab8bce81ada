import torch

from preftune.engine.packing import CHOSEN, PAD, PROMPT, REJECTED, pack_pairs


def test_shared_prompt_layout_worked_by_hand():
    # prompt [1 2 3], chosen [4 5], rejected [6 7 8]: one segment of 8 tokens.
    packed = pack_pairs([[1, 2, 3]], [[4, 5]], [[6, 7, 8]], pad_id=0)
    assert packed.input_ids.tolist() == [[1, 2, 3, 4, 5, 6, 7, 8]]
    # Rejected positions continue from the prompt (3, 4, 5), not from the chosen answer.
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 4, 3, 4, 5]]
    assert packed.part.tolist() == [[PROMPT] * 3 + [CHOSEN] * 2 + [REJECTED] * 3]
    # Chosen tokens 4, 5 are predicted at layout positions 2, 3; rejected 6 by the prompt's
    # last position 2, then 7 and 8 at positions 5 and 6.
    assert packed.hidden_index.tolist() == [2, 3, 2, 5, 6]
    assert packed.labels.tolist() == [4, 5, 6, 7, 8]
    assert packed.owner.tolist() == [0, 0, 1, 1, 1]

    allowed = packed.allowed()[0, 0]
    assert allowed[5].tolist() == [True, True, True, False, False, True, False, False]
    assert allowed[4].tolist() == [True] * 5 + [False] * 3  # chosen never sees rejected
    assert packed.num_tokens == 8


def test_pairs_share_rows_without_seeing_each_other():
    # Segment lengths 10, 4 and 4: rows of 10 hold [10] and [4, 4] with 2 padding tokens.
    packed = pack_pairs([[1] * 6, [2] * 2, [3] * 1], [[4] * 2, [5], [6] * 2], [[7] * 2, [8], [9]],
                        pad_id=0)
    assert packed.input_ids.shape == (2, 10)
    assert packed.part[1].tolist().count(PAD) == 2
    allowed = packed.allowed()[1, 0]
    segment = packed.segment_ids[1]
    for q in range(10):
        for k in range(10):
            if segment[q] != segment[k]:
                assert not allowed[q, k]
    # Owners: pair i's chosen tokens count for sequence i, its rejected ones for 3 + i.
    assert sorted(set(packed.owner.tolist())) == [0, 1, 2, 3, 4, 5]
    assert packed.labels[packed.owner == 4].tolist() == [8]


def test_padding_attends_only_to_itself():
    packed = pack_pairs([[1, 2, 3, 4], [5]], [[6], [6]], [[7], [7]], pad_id=0,
                        several_per_row=False)
    assert packed.input_ids.shape == (2, 6)
    allowed = packed.allowed()[1, 0]
    pads = (packed.part[1] == PAD).nonzero().flatten().tolist()
    assert pads == [3, 4, 5]
    for q in pads:
        assert allowed[q].nonzero().flatten().tolist() == [q]


def test_unshared_layout_has_two_segments_per_pair():
    packed = pack_pairs([[1, 2]], [[3]], [[4, 5]], pad_id=0, shared_prompt=False,
                        several_per_row=False)
    assert packed.input_ids.tolist() == [[1, 2, 3, 0], [1, 2, 4, 5]]
    assert packed.hidden_index.tolist() == [1, 5, 6]  # row 1 starts at flat index 4
    assert packed.owner.tolist() == [0, 1, 1]


def test_empty_prompt_scores_no_first_token():
    packed = pack_pairs([[]], [[3, 4]], [[5, 6]], pad_id=0)
    assert packed.labels.tolist() == [4, 6]
    assert packed.hidden_index.tolist() == [0, 2]


def test_additive_mask_matches_the_boolean_one():
    packed = pack_pairs([[1, 2, 3], [4]], [[5, 6], [7]], [[8], [9, 9]], pad_id=0)
    allowed = packed.allowed()
    additive = packed.attention_mask("eager", torch.float32)
    assert torch.equal(additive == 0, allowed)
    assert packed.attention_mask("sdpa", torch.float32).dtype == torch.bool


def test_ld_weights_worked_by_hand():
    # Chosen of 2 tokens, rejected of 4, alpha 0.5: shared length min(2, 4) = 2, so chosen
    # weighs [1, 1] and rejected [1, 1, 0.5, 0.5]: rejected's sum is l6 + l7 + 0.5 (l8 + l9).
    packed = pack_pairs([[1, 2, 3]], [[4, 5]], [[6, 7, 8, 9]], pad_id=0, ld_alpha=0.5)
    assert packed.owner.tolist() == [0, 0, 1, 1, 1, 1]
    assert packed.ld_weight.tolist() == [1, 1, 1, 1, 0.5, 0.5]
    assert packed.ld_weight.dtype == torch.float32


def test_ld_weights_follow_each_pair_in_every_layout():
    # Pair 0: chosen 3, rejected 1 (chosen's tail is 2 tokens); pair 1: 2 and 2 (no tail).
    prompts, chosen, rejected = [[1, 2], [3]], [[4, 4, 4], [5, 5]], [[6], [7, 7]]
    for shared in (True, False):
        for several in (True, False):
            packed = pack_pairs(prompts, chosen, rejected, 0, shared_prompt=shared,
                                several_per_row=several, ld_alpha=0.25)
            for owner, want in {0: [1, 0.25, 0.25], 1: [1, 1], 2: [1], 3: [1, 1]}.items():
                assert packed.ld_weight[packed.owner == owner].tolist() == want


def test_ld_weights_count_scored_tokens_only():
    # An empty prompt leaves each response's first token unscored: chosen scores [4],
    # rejected [6, 7]; shared length 1.
    packed = pack_pairs([[]], [[3, 4]], [[5, 6, 7]], pad_id=0, ld_alpha=0.5)
    assert packed.labels.tolist() == [4, 6, 7]
    assert packed.ld_weight.tolist() == [1, 1, 0.5]


def test_no_ld_weights_without_ld_alpha_or_at_one():
    for alpha in (None, 1.0):
        assert pack_pairs([[1]], [[2]], [[3, 4]], pad_id=0, ld_alpha=alpha).ld_weight is None
