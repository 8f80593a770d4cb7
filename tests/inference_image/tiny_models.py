"""Tiny random-weight models with an offline tokenizer, saved with save_pretrained."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "translate English to French: The house is wonderful.",
    "Hello, how are you today? I am fine, thank you.",
    "Large language models answer questions and write text.",
    "Une maison merveilleuse, le chien est paresseux.",
    "Streaming responses arrive as server-sent events.",
    "def add(a, b):\n    return a + b\n",
    "0123456789 numbers, punctuation! and symbols: #@%&*()[]{}",
] * 4

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant: {% endif %}"
)

SPECIALS = ["<pad>", "</s>", "<unk>", "<s>"]  # ids 0..3: T5 wants pad=0 (decoder start), eos=1


def build_tokenizer(chat_template: str | None, vocab_size: int = 400):
    """A byte-level BPE trained in-process on a few sentences: any text encodes, nothing
    is downloaded, and decoding partial sequences exercises incomplete UTF-8."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        bos_token="<s>",
        model_max_length=256,
    )
    if chat_template:
        wrapped.chat_template = chat_template
    return wrapped


def _silence_eos(model, *token_ids: int) -> None:
    # Random weights would emit EOS (or pad, which T5 starts its decoder with) at random; a zero
    # output row gives a logit of 0, which (with hundreds of random logits) is never the argmax,
    # so greedy runs reach max_tokens.
    import torch

    with torch.no_grad():
        for token_id in token_ids:
            model.get_output_embeddings().weight[token_id].zero_()


def build_causal(folder: Path, *, tokenizer=None, family: str = "llama", **overrides) -> Path:
    """A tiny Llama (or another ``family``: ``mistral``) with a chat template
    (``tokenizer``'s, when given: its vocabulary sizes the model)."""
    import torch
    import transformers

    torch.manual_seed(0)
    tokenizer = tokenizer or build_tokenizer(CHAT_TEMPLATE)
    params = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    params.update(overrides)
    name = {"llama": "Llama", "mistral": "Mistral"}[family]
    config_class = getattr(transformers, f"{name}Config")
    model = getattr(transformers, f"{name}ForCausalLM")(config_class(**params))
    _silence_eos(model, tokenizer.eos_token_id, tokenizer.pad_token_id)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_seq2seq(folder: Path) -> Path:
    """A tiny T5 (encoder-decoder), tokenizer without a chat template."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    tokenizer = build_tokenizer(None)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    # T5Config's constructor ties embeddings whatever it is told; an untied head keeps the
    # random decoder from echoing its input token forever.
    config.tie_word_embeddings = False
    model = T5ForConditionalGeneration(config)
    _silence_eos(model, tokenizer.eos_token_id, tokenizer.pad_token_id)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
