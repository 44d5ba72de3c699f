"""The peer of `apex bench --peer langgraph`: Apex's golden-path run as a LangGraph graph.

A supervisor node and four sub-agent nodes, run in Apex's order
(supervisor → triage → data → optimization → report), with no model calls. Each node
streams, through LangGraph's custom stream (`get_stream_writer()`, read by the client with
`stream_mode="custom"`), the events the same agent streams in an Apex run: the same kinds,
in the same order, the same count and the same payloads (`events.json`, recorded from one
Apex run by `record-events.sh`). Each event gets the run's and thread's ids, its sequence
number in the run (`seq`, 1..n) and a timestamp in milliseconds, as Apex's do, so both
sides send about the same bytes and the bench checks them the same way.

The report node also streams the supervisor's closing events and the final response,
which in Apex follow the report agent: a linear chain of five nodes is the cheapest shape
for this workload in LangGraph (no routing back to the supervisor between sub-agents).
"""

import json
import pathlib
import time
from typing import TypedDict

from langgraph.config import get_config, get_stream_writer
from langgraph.graph import END, START, StateGraph

AGENTS = ["supervisor", "triage", "data", "optimization", "report"]


def _segments():
    """The recorded events, split at each sub-agent's `agent_started`, numbered 1..n."""
    events = json.loads((pathlib.Path(__file__).parent / "events.json").read_text())
    segments = {agent: [] for agent in AGENTS}
    current = "supervisor"
    for seq, event in enumerate(events, start=1):
        if event["type"] == "agent_started" and event.get("agent") in AGENTS[1:]:
            current = event["agent"]
        segments[current].append((seq, event))
    return segments


SEGMENTS = _segments()


class State(TypedDict, total=False):
    question: str
    seq: int


def _node(agent):
    events = SEGMENTS[agent]

    async def node(state: State) -> State:
        write = get_stream_writer()
        config = get_config()
        ids = {
            "run_id": config.get("metadata", {}).get("run_id"),
            "thread_id": config.get("configurable", {}).get("thread_id"),
        }
        for seq, event in events:
            write({**event, **ids, "seq": seq, "ts": int(time.time() * 1000)})
        return {"seq": events[-1][0] if events else state.get("seq", 0)}

    node.__name__ = agent
    return node


builder = StateGraph(State)
previous = START
for name in AGENTS:
    builder.add_node(name, _node(name))
    builder.add_edge(previous, name)
    previous = name
builder.add_edge(previous, END)
graph = builder.compile()
