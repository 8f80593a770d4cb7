"""``--chat-template``: the operator's template for a model without one (or instead of its
own), read and parsed before the model loads; a real seq2seq server without a template of
its own then serves chats to the official client."""

from __future__ import annotations

import httpx
import openai
import pytest
from reference import greedy
from server_process import ServerProcess

from llmcloud.inference_image.chat_prompt import ChatTemplateError, read_template

TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"


def test_a_file_or_the_template_itself(tmp_path):
    path = tmp_path / "chat.jinja"
    path.write_text(TEMPLATE)
    assert read_template(str(path)) == TEMPLATE
    assert read_template(TEMPLATE) == TEMPLATE


@pytest.mark.parametrize(("value", "message"), [
    ("templates/chat.jinja", "templates/chat.jinja: no such file"),
    ("{% for m in messages %}{{ m }}", "not a valid Jinja template: Unexpected end of "
                                       "template"),
    ("{{ messages[0]. }}", "not a valid Jinja template"),
    ("   \n", "--chat-template is empty"),
])
def test_a_template_that_cannot_serve_is_refused(value, message):
    with pytest.raises(ChatTemplateError, match=message):
        read_template(value)


def test_a_broken_template_stops_the_server_before_loading(causal_dir, tmp_path):
    path = tmp_path / "broken.jinja"
    path.write_text("{% if messages %}no end")
    server = ServerProcess("--model", str(causal_dir), "--chat-template", str(path))
    assert server.wait_exit(30) == 1
    assert f"{path} is not a valid Jinja template" in server.output()


def test_a_model_without_a_template_serves_chats_with_the_operators(seq2seq_dir,
                                                                     seq2seq_ref):
    server = ServerProcess("--model", str(seq2seq_dir), "--served-model-name", "tiny-t5",
                           env={"LLMCLOUD_CHAT_TEMPLATE": TEMPLATE})
    messages = [{"role": "system", "content": "Translate to French."},
                {"role": "user", "content": "the house is blue"}]
    try:
        server.wait_ready()
        tokenized = httpx.post(f"{server.url}/tokenize", json={"messages": messages},
                               timeout=30).json()["tokens"]
        rendered = seq2seq_ref.tokenizer.decode(tokenized)
        assert rendered == "system: Translate to French.\nuser: the house is blue\n"
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)
        answer = client.chat.completions.create(model="tiny-t5", messages=messages,
                                                max_tokens=6, temperature=0)
        expected = greedy(seq2seq_ref, tokenized, 6)
        assert answer.choices[0].message.content == seq2seq_ref.tokenizer.decode(
            expected, skip_special_tokens=True)
    finally:
        server.stop()
