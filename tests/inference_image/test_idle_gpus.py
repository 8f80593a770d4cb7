"""The GPUs torch sees beyond those the model's copies run on are counted, to be warned of."""

from __future__ import annotations

import torch

from llmcloud.inference_image.loader import gpu_count, idle_gpus


def test_gpus_besides_the_ones_in_use_are_idle(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert gpu_count() == 4
    assert idle_gpus(torch.device("cuda:0")) == 3  # one copy
    assert idle_gpus(torch.device("cuda:0"), copies=4) == 0  # a copy on each
    assert idle_gpus(torch.device("cpu")) == 0  # a CPU server uses no GPU at all
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_count() == 0 and idle_gpus(torch.device("cuda")) == 0
