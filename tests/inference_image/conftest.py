"""Session fixtures: tiny offline models, and real server processes shared across tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from devices import TEST_DEVICE, TEST_DTYPE  # noqa: E402
from lora_adapters import build_adapter, merge  # noqa: E402
from server_process import ServerProcess  # noqa: E402
from tiny_models import build_causal, build_seq2seq, build_tokenizer  # noqa: E402

CAUSAL_CONTEXT = 1024


@pytest.fixture(scope="session")
def causal_dir(tmp_path_factory) -> Path:
    """A tiny Llama with a manifest.json, as `llmcloud model upload` would leave it."""
    import json

    from llmcloud.inference_image.manifest import MANIFEST_NAME, build_manifest

    folder = build_causal(tmp_path_factory.mktemp("tiny-llama"),
                          max_position_embeddings=CAUSAL_CONTEXT)
    manifest = build_manifest(folder, "tiny-llama", "v1")
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="session")
def seq2seq_dir(tmp_path_factory) -> Path:
    return build_seq2seq(tmp_path_factory.mktemp("tiny-t5"))


@pytest.fixture(scope="module")
def causal(causal_dir):
    """The tiny Llama loaded in this process on the test device, as the server loads it
    (weights packed on CPU)."""
    from llmcloud.inference_image.loader import load_model

    return load_model(causal_dir, task=None, device=TEST_DEVICE, dtype=TEST_DTYPE,
                      pack_for_batch=8)


@pytest.fixture(scope="module")
def seq2seq(seq2seq_dir):
    """The tiny T5 loaded in this process, as the server loads it."""
    from llmcloud.inference_image.loader import load_model

    return load_model(seq2seq_dir, task=None, device=TEST_DEVICE, dtype=TEST_DTYPE,
                      pack_for_batch=8)


@pytest.fixture(scope="session")
def tokenizer():
    from tiny_models import CHAT_TEMPLATE

    return build_tokenizer(CHAT_TEMPLATE)


@pytest.fixture(scope="session")
def causal_server(causal_dir):
    server = ServerProcess("--model", str(causal_dir), "--served-model-name", "tiny-llama",
                           "--model-version", "v1", "--max-batch-size", "8")
    try:
        yield server.wait_ready()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def seq2seq_server(seq2seq_dir):
    server = ServerProcess("--model", str(seq2seq_dir), "--served-model-name", "tiny-t5")
    try:
        yield server.wait_ready()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def causal_client(causal_server):
    """The official openai client against the shared tiny-Llama server."""
    import openai

    return openai.OpenAI(base_url=f"{causal_server.url}/v1", api_key="unused", max_retries=0,
                         timeout=60)


@pytest.fixture(scope="module")
def seq2seq_client(seq2seq_server):
    """The official openai client against the shared tiny-T5 server."""
    import openai

    return openai.OpenAI(base_url=f"{seq2seq_server.url}/v1", api_key="unused", max_retries=0,
                         timeout=60)


@pytest.fixture(scope="module")
def causal_ref(causal_dir):
    """The tiny Llama as transformers loads it on the CPU (weights not packed): the
    reference."""
    from llmcloud.inference_image.loader import load_model

    return load_model(causal_dir, task=None, device="cpu", dtype="auto")


@pytest.fixture(scope="module")
def seq2seq_ref(seq2seq_dir):
    """The tiny T5 as transformers loads it: the reference."""
    from llmcloud.inference_image.loader import load_model

    return load_model(seq2seq_dir, task=None, device="cpu", dtype="auto")


E2E_CASES = [("causal_client", "causal_ref", "tiny-llama"),
             ("seq2seq_client", "seq2seq_ref", "tiny-t5")]


@pytest.fixture(params=E2E_CASES, ids=["causal", "seq2seq"])
def case(request):
    """(official client, reference model, served model name) for each model family."""
    client_name, ref_name, model = request.param
    return (request.getfixturevalue(client_name), request.getfixturevalue(ref_name), model)


@pytest.fixture(scope="module")
def with_adapters(causal_dir, tmp_path_factory):
    """The tiny Llama as served with two adapters, and what each slot must answer as: the
    model, or its merged model."""
    from llmcloud.inference_image.loader import load_model
    from llmcloud.inference_image.lora import Adapters

    root = tmp_path_factory.mktemp("adapters")
    folders = {"sql": build_adapter(root / "sql", causal_dir, seed=1),
               "chat": build_adapter(root / "chat", causal_dir, seed=2, rank=8)}
    loaded = load_model(causal_dir, task=None, device=TEST_DEVICE, dtype=TEST_DTYPE,
                        pack_for_batch=4)
    adapters = Adapters(loaded.model)
    references = {0: load_model(causal_dir, task=None, device="cpu", dtype="auto")}
    for name, folder in folders.items():
        adapters.load(name, folder, str(folder))
        references[adapters.slot(name)] = load_model(
            merge(causal_dir, folder, root / f"{name}-merged"), task=None, device="cpu",
            dtype="auto")
    return loaded, adapters, references
