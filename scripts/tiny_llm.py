"""Build a tiny, random, fully offline causal LM for tests.

``build_tiny_llm(directory)`` trains a byte-level BPE tokenizer on a small
in-file corpus, wraps it in ``PreTrainedTokenizerFast`` (with bos/eos/pad
tokens, left padding and a Jinja chat template), creates a 2-layer
``LlamaForCausalLM`` with a fixed seed and saves both with ``save_pretrained``
so that ``AutoTokenizer.from_pretrained(path)`` and
``AutoModelForCausalLM.from_pretrained(path)`` load them back by path.

No network access is needed; the whole build takes well under a second.
The model's output is random text: use it for plumbing tests (loading,
quantisation, batching, decoding, parsing fallbacks), never for quality.
"""

from __future__ import annotations

import pathlib

BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = [PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN, *ROLE_TOKENS]

VOCAB_SIZE = 768
SEED = 1234

# Minimal chat template: bos, then "<|role|>\ncontent</s>\n" per message,
# then "<|assistant|>\n" when a generation prompt is requested.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

CORPUS = [
    "You are a helpful assistant that summarises a user's interests.",
    "Summarise the reading history of this user as JSON.",
    "Return only a JSON object with the keys summary and interests.",
    "The user reads articles about machine learning, cooking and football.",
    "Recent items: a review of a new laptop, a pasta recipe, match highlights.",
    "The user has recently started reading about gardening and houseplants.",
    "Interests drift over time; older items matter less than recent ones.",
    "Recommend new articles that match the user's long-term interests.",
    '{"summary": "Enjoys technology news and cooking.", "interests": ["technology", "cooking"]}',
    '{"summary": "Follows football and travel blogs.", "interests": ["football", "travel"]}',
    '{"summary": "Reads about science, space and physics.", '
    '"interests": ["science", "space", "physics"]}',
    '{"summary": "Likes jazz, vinyl records and concerts.", "interests": ["music", "jazz"]}',
    '{"summary": "", "interests": []}',
    '{"interests": ["history", "politics", "economics"], "summary": "News junkie."}',
    "[1] How to bake sourdough bread at home",
    "[2] Ten tips for faster Python code",
    "[3] The best hiking trails in the Alps",
    "[4] Understanding transformers and attention",
    "[5] A beginner's guide to investing and personal finance",
    "Title: Electric cars in 2025. Category: automotive. Clicked: yes.",
    "Title: Photography basics for travellers. Category: hobbies. Clicked: no.",
    "Numbers and dates: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024-01-31 12:30.",
    "Punctuation: , . ; : ! ? ' \" ( ) [ ] { } < > / \\ - _ + = * & % $ # @ ~ `",
    "Unicode: café, naïve, São Paulo, Zürich, Kraków, Ελληνικά, 日本語, 中文, 😀 ✓ — …",
    "Der Nutzer liest gern über Fußball und Kochen.",
    "L'utilisateur aime la cuisine française et le cinéma.",
    "El usuario lee noticias de tecnología y deportes.",
    "The profile should be short, readable and written in plain English.",
    "Do not invent interests that are not supported by the history.",
    "If the history is empty, return an empty list of interests.",
    "Drift detected: the user moved from gaming to parenting topics.",
    "No drift: the user's interests are stable over the last month.",
    "system: you are a recommender. user: here is my history. assistant: ok.",
    "The quick brown fox jumps over the lazy dog.",
    "Pack my box with five dozen liquor jugs.",
    "Sphinx of black quartz, judge my vow.",
]


def _build_tokenizer():  # -> PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Repeat the corpus so frequent pairs dominate the merges deterministically.
    backend.train_from_iterator(CORPUS * 4, trainer=trainer)

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        additional_special_tokens=list(ROLE_TOKENS),
        padding_side="left",
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_llm(directory: pathlib.Path) -> pathlib.Path:
    """Build the tiny tokenizer + Llama model and save them into ``directory``.

    Returns ``directory`` (created if needed), loadable by path with
    ``AutoTokenizer.from_pretrained`` / ``AutoModelForCausalLM.from_pretrained``.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    tokenizer = _build_tokenizer()
    tokenizer.save_pretrained(directory)

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config)
    model.eval()
    gen = model.generation_config
    gen.bos_token_id = tokenizer.bos_token_id
    gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory, safe_serialization=True)
    return directory


def build_qwen2_shaped_llm(directory: pathlib.Path) -> pathlib.Path:
    """A Qwen2-1.5B-shaped model (28 layers, hidden 1536, 151,936-token head) with random bf16
    weights and the tiny tokenizer: for throughput on a GPU, which does not depend on the
    weights. About 3 GB on disk; its output is as meaningless as the tiny model's."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _build_tokenizer()
    tokenizer.model_max_length = 32_768
    tokenizer.save_pretrained(directory)
    config = Qwen2Config(
        vocab_size=151_936,
        hidden_size=1_536,
        intermediate_size=8_960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        max_position_embeddings=32_768,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(SEED)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(directory, safe_serialization=True)
    return directory
