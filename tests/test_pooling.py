"""Every pooler on hand-built token states gives the hand-computed vector."""

import pytest
import torch

from gpte.models.pooling import POOLERS, TokenStates, build_pooler
from gpte.models.tokenization import PAD, PROMPT, SPECIAL

# one text of 3 real tokens, right-padded to 4, and the same text left-padded
HIDDEN = torch.tensor([[[1.0, 2.0], [3.0, -4.0], [5.0, 6.0], [100.0, 100.0]]])
RIGHT = torch.tensor([[1, 1, 1, 0]])
HIDDEN_LEFT = torch.tensor([[[100.0, 100.0], [1.0, 2.0], [3.0, -4.0], [5.0, 6.0]]])
LEFT = torch.tensor([[0, 1, 1, 1]])

EXPECTED = {
    "cls": [1.0, 2.0],
    "last": [5.0, 6.0],
    "mean": [3.0, 4.0 / 3.0],
    "mean_sqrt_len": [9.0 / 3**0.5, 4.0 / 3**0.5],
    "max": [5.0, 6.0],
    # weights 1, 2, 3: (1*1 + 2*3 + 3*5) / 6, (1*2 - 2*4 + 3*6) / 6
    "weighted_mean": [22.0 / 6.0, 12.0 / 6.0],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("hidden, mask", [(HIDDEN, RIGHT), (HIDDEN_LEFT, LEFT)], ids=["right", "left"])
def test_pooler_hand_computed(name, hidden, mask):
    vector = build_pooler(name)(TokenStates(hidden, mask))
    torch.testing.assert_close(vector, torch.tensor([EXPECTED[name]]))


def test_prompt_exclusion_keeps_text_and_trailing_special_tokens():
    # [CLS] query : hello world [SEP] <pad>
    segments = torch.tensor([[SPECIAL, PROMPT, PROMPT, 1, 1, SPECIAL, PAD]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0]])
    hidden = torch.arange(7.0).view(1, 7, 1)
    pooler = build_pooler("mean", include_prompt=False)
    states = TokenStates(hidden, mask, segments=segments)
    assert pooler.selection(states).tolist() == [[0, 0, 0, 1, 1, 1, 0]]
    torch.testing.assert_close(pooler(states), torch.tensor([[4.0]]))  # (3 + 4 + 5) / 3
    assert build_pooler("cls", include_prompt=False)(states).item() == 3.0
    assert build_pooler("last", include_prompt=False)(states).item() == 5.0
    # weighted_mean keeps the original position weights 4, 5, 6 of the kept tokens
    torch.testing.assert_close(
        build_pooler("weighted_mean", include_prompt=False)(states), torch.tensor([[(4 * 3 + 5 * 4 + 6 * 5) / 15.0]])
    )


def test_prompt_exclusion_of_an_empty_text_keeps_the_trailing_special_token():
    segments = torch.tensor([[PAD, SPECIAL, PROMPT, PROMPT, SPECIAL]])  # left-padded [CLS] query : [SEP]
    states = TokenStates(torch.zeros(1, 5, 1), (segments != PAD).long(), segments=segments)
    assert build_pooler("mean", include_prompt=False).selection(states).tolist() == [[0, 0, 0, 0, 1]]


def test_prompt_exclusion_drops_template_text_after_the_slot():
    # <s> This : hello " means </s>
    segments = torch.tensor([[SPECIAL, PROMPT, PROMPT, 1, PROMPT, PROMPT, SPECIAL]])
    states = TokenStates(torch.zeros(1, 7, 1), torch.ones(1, 7, dtype=torch.long), segments=segments)
    assert build_pooler("mean", include_prompt=False).selection(states).tolist() == [[0, 0, 0, 1, 0, 0, 1]]


def test_span_mean_pools_one_copy_of_the_text():
    # <s> Rewrite : a b , rewritten : a b <pad>   (copies 1 and 2 of the text)
    segments = torch.tensor([[SPECIAL, PROMPT, PROMPT, 1, 1, PROMPT, PROMPT, PROMPT, 2, 2, PAD]])
    mask = (segments != PAD).long()
    hidden = torch.arange(11.0).view(1, 11, 1)
    states = TokenStates(hidden, mask, segments=segments)
    assert build_pooler("span_mean")(states).item() == 8.5  # last copy: positions 8, 9
    assert build_pooler("span_mean", copy=1)(states).item() == 3.5  # first copy: positions 3, 4


def test_multi_layer_averages_top_layers_then_pools():
    layers = tuple(torch.full((1, 2, 1), float(value)) for value in (0, 10, 20, 30))  # embeddings + 3 layers
    states = TokenStates(layers[-1], torch.tensor([[1, 1]]), layers=layers)
    assert build_pooler("multi_layer", layers=2)(states).item() == 25.0
    assert build_pooler("multi_layer", layers=3, token_pooling="cls")(states).item() == 20.0
    with pytest.raises(ValueError, match="top 4 layers but the model has 3"):
        build_pooler("multi_layer", layers=4)(states)


def test_text_with_no_selected_token_gets_a_zero_vector():
    empty = TokenStates(torch.ones(1, 3, 2), torch.zeros(1, 3, dtype=torch.long))
    for name in ("cls", "last", "mean", "max", "weighted_mean"):
        assert build_pooler(name)(empty).abs().sum() == 0, name
    no_text = torch.tensor([[SPECIAL, PROMPT, SPECIAL]])  # an empty text inside a prompt
    states = TokenStates(torch.ones(1, 3, 2), torch.ones(1, 3, dtype=torch.long), segments=no_text)
    assert build_pooler("span_mean")(states).abs().sum() == 0


def test_unknown_pooling_lists_the_choices():
    with pytest.raises(ValueError, match="unknown pooling 'avg'; choose one of: cls, mean"):
        build_pooler("avg")
    with pytest.raises(ValueError, match="bad options for pooling 'mean'"):
        build_pooler("mean", append_eos=True)
    assert set(POOLERS) == {
        "cls",
        "mean",
        "mean_sqrt_len",
        "max",
        "weighted_mean",
        "last",
        "span_mean",
        "multi_layer",
        "latent_attention",
    }


def test_pooler_config_round_trips():
    for name, options in [
        ("last", {"append_eos": True}),
        ("span_mean", {"copy": 2}),
        ("multi_layer", {"layers": 2, "token_pooling": "last", "append_eos": True}),
    ]:
        pooler = build_pooler(name, **options)
        assert build_pooler(pooler.name, **pooler.config()).config() == pooler.config()
