"""The waiting queue's order: round by round, the shortest prompt first within a round."""

from __future__ import annotations

from llmcloud.inference_image.waiting_queue import WaitingQueue


class Row:
    def __init__(self, name: str, context: int, priority: int = 0):
        self.name, self.context, self.priority = name, context, priority
        self.arrival = self.round = -1


def names(queue: WaitingQueue) -> list[str]:
    return [row.name for row in queue]


def test_requests_of_one_round_go_shortest_first_and_rounds_in_order():
    queue = WaitingQueue()
    long, short, middle, twin = Row("long", 400), Row("short", 16), Row("middle", 64), \
        Row("twin", 16)
    queue.add([long, short, middle, twin])
    assert names(queue) == ["short", "twin", "middle", "long"]  # equals: as they came
    queue.next_round()
    queue.add([Row("later", 1)])
    assert names(queue) == ["short", "twin", "middle", "long", "later"]
    assert queue.popleft() is short
    queue.next_round()
    queue.add([short])  # preempted: back in its own round, ahead of every later one
    assert names(queue) == ["short", "twin", "middle", "long", "later"]


def test_priority_comes_before_rounds():
    queue = WaitingQueue(by_priority=True)
    queue.add([Row("long", 400, priority=1), Row("short", 16, priority=1)])
    queue.next_round()
    queue.add([Row("urgent", 900, priority=0), Row("idle", 1, priority=2)])
    assert names(queue) == ["urgent", "short", "long", "idle"]
