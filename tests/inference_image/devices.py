"""The device the runtime's tests run the engine and servers on.

``cpu`` by default; ``LLMCLOUD_TEST_DEVICE=cuda`` on a GPU machine runs the same checks on
CUDA. Models there load in float32 (the server's default on a GPU is bfloat16), so that
their tokens can be held to the float32 references that stay on the CPU.
"""

from __future__ import annotations

import os

TEST_DEVICE = os.environ.get("LLMCLOUD_TEST_DEVICE", "cpu")
TEST_DTYPE = "float32"
#: the server flags that put a test server on the test device
DEVICE_FLAGS = ("--device", TEST_DEVICE, "--dtype", TEST_DTYPE)

